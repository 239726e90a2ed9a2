"""A real SMTP server (aiosmtpd) that writes every message it accepts as an .eml file.

The demo delivers to it so that emails can be opened afterwards, with no relay and no
credentials; the tests deliver to it to see exactly what left the worker.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import IO, Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from worker.local.ports import free_port, listening

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>\r\n]+>)", re.IGNORECASE | re.MULTILINE)


class EmlFolder:
    """aiosmtpd handler: one file per accepted message, named after its Message-ID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.accepted = 0
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        found = _MESSAGE_ID.search(content.split(b"\r\n\r\n", 1)[0])
        digest = hashlib.sha256(found[1] if found else content).hexdigest()[:16]
        path = self.folder / f"{digest}.eml"
        index = 1
        while path.exists():  # the same Message-ID twice is kept twice: duplicates must be visible
            index += 1
            path = self.folder / f"{digest}-{index}.eml"
        path.write_bytes(content)
        self.accepted += 1
        return "250 2.0.0 OK: queued"

    def messages(self) -> list[Message]:
        return [message_from_bytes(p.read_bytes(), policy=default) for p in sorted(self.folder.glob("*.eml"))]


def start(handler: Any, port: int | None = None, hostname: str = "127.0.0.1", smtputf8: bool = True) -> Controller:
    """Start the server in its own thread (on a free port unless given); see `controller.port`.
    `smtputf8=False`: a server that does not offer SMTPUTF8 (RFC 6531), as many relays."""
    controller = Controller(handler, hostname=hostname, port=port or free_port(hostname),
                            enable_SMTPUTF8=smtputf8)
    controller.start()
    return controller


class PostfixSink:
    """postfix's `smtp-sink`: an SMTP server written in C that accepts every message and
    keeps none. The benchmarks send to it, as production sends to a real MTA: aiosmtpd's
    own cost per message (~0.5 ms of CPU) would be most of a bare sender's. Debian's
    `postfix` package has it (`make system` installs it). It counts what it took, but
    writes its counter out only as it stops: `accepted` is known after `stop()`."""

    def __init__(self, hostname: str = "127.0.0.1") -> None:
        self.hostname, self.port = hostname, free_port(hostname)
        self.accepted = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostfixSink:
        program = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not Path(program).exists():
            raise RuntimeError("postfix's smtp-sink is not installed (apt-get install postfix; `make system` does)")
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to keep root's privileges
        # -c: a counter ("sess=1 quit=0 mesg=42\r") after each message, buffered until it exits
        self.process = subprocess.Popen([program, *user, "-c", f"{self.hostname}:{self.port}", "1024"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # Read as it comes, or a full pipe stops the server (it blocks writing its counter).
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        if not listening(self.hostname, self.port, 10.0):
            self.stop()
            raise RuntimeError(f"smtp-sink did not listen on {self.hostname}:{self.port} within 10 s")
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _read(self, output: IO[bytes]) -> None:
        last = b""
        while chunk := os.read(output.fileno(), 65536):
            last = (last + chunk)[-256:]  # the counter at the end is the total
        if found := _COUNTER.findall(last):
            self.accepted = int(found[-1])

    def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)


_COUNTER = re.compile(rb"mesg=(\d+)")
