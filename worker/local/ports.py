"""Free ports on loopback, for the local stand-ins and the tests' servers, and waiting
for a server started there to answer."""

from __future__ import annotations

import socket
import time
import urllib.request


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS's choice); whoever binds it next gets it."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def answering(url: str, within: float) -> bool:
    """Whether `url` answers (any HTTP status but an error) within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def listening(host: str, port: int, within: float) -> bool:
    """Whether something accepts connections at `host:port` within `within` seconds (a
    server that speaks no HTTP: postfix's smtp-sink)."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
