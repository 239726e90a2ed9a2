"""Several hosts on one machine, for the cluster benchmark and its test: each host a
Linux network namespace with one veth link to a bridge, the bridge (10.88.0.1) being
the machine itself, where PostgreSQL and Redis listen. A host's link can be cut (an
nftables table dropping everything in its namespace) and mended, and a host can die
(every process in its namespace SIGKILLed). Traffic never leaves the machine.

Needs root, `ip` (iproute2) and `nft` (nftables); `available()` says why not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

BRIDGE, GATEWAY, PREFIX = "dnb0", "10.88.0.1", "10.88.0"


def available() -> str | None:
    """None if hosts can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (apt-get install {package}; `make system` does)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Hosts:
    """Namespaces `dn-<name>`, each at 10.88.0.<10 + n>; `remove()` undoes everything."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)  # left by a run that was killed
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")

    def add(self, name: str) -> str:
        """A new host; its address."""
        number = len(self.addresses) + 1
        namespace, outside, inside = f"dn-{name}", f"dnv{number}", f"dnp{number}"
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)  # left by a run that was killed
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", BRIDGE, "up")
        address = f"{PREFIX}.{10 + number}"
        for args in (("link", "set", "lo", "up"), ("addr", "add", f"{address}/24", "dev", inside),
                     ("link", "set", inside, "up")):
            _ip("netns", "exec", namespace, "ip", *args)
        self.addresses[name] = address
        return address

    def popen(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start `argv` on host `name`, its output appended to `log`."""
        output = open(log, "ab")  # noqa: SIM115 (the child keeps it)
        return subprocess.Popen(["ip", "netns", "exec", f"dn-{name}", *argv], env=dict(env), stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)

    def cut(self, name: str) -> None:
        """Drop every packet in and out of the host (as a pulled cable: nothing is refused)."""
        rules = ("table inet cut {\n chain in { type filter hook input priority -300; policy drop; }\n"
                 " chain out { type filter hook output priority -300; policy drop; }\n}\n")
        subprocess.run(["ip", "netns", "exec", f"dn-{name}", "nft", "-f", "-"], input=rules.encode(), check=True,
                       capture_output=True)

    def mend(self, name: str) -> None:
        subprocess.run(["ip", "netns", "exec", f"dn-{name}", "nft", "delete", "table", "inet", "cut"],
                       check=True, capture_output=True)

    def kill(self, name: str) -> int:
        """SIGKILL every process on the host, as a machine that loses power; how many."""
        found = subprocess.run(["ip", "netns", "pids", f"dn-{name}"], capture_output=True, text=True).stdout.split()
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        return len(found)

    def remove(self) -> None:
        for number, name in enumerate(list(self.addresses), start=1):
            self.kill(name)
            subprocess.run(["ip", "link", "del", f"dnv{number}"], capture_output=True)  # and its peer inside
            subprocess.run(["ip", "netns", "del", f"dn-{name}"], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        self.addresses.clear()
