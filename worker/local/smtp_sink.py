"""A real SMTP server (aiosmtpd) that writes every message it accepts as an .eml file.

The demo delivers to it so that emails can be opened afterwards, with no relay and no
credentials; the tests deliver to it to see exactly what left the worker.
"""

from __future__ import annotations

import hashlib
import re
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from worker.local.ports import free_port

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
