"""The .eml sink with scripted replies, for tests: refuse a recipient, answer DATA with 451,
drop the connection after the data, or hold every transaction at RCPT until a gate
opens (to stop a worker mid-send)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from worker.local.smtp_sink import EmlFolder


class Scripted(EmlFolder):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.rcpt: dict[str, list[str]] = {}
        self.data: list[str] = []
        self.connections = 0
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = 0
        self.drop_after_data: set[str] = set()  # recipients whose next DATA is read, not stored, and never answered

    async def handle_EHLO(self, server: SMTPServer, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if not self.gate.is_set():
            self.waiting += 1
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait)
        replies = self.rcpt.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        dropped = self.drop_after_data.intersection(envelope.rcpt_tos)
        if dropped:  # the connection fails after the data: the client cannot know whether we kept it
            self.drop_after_data -= dropped
            server.transport.close()
            await asyncio.sleep(0.5)
            return "451 not reached"
        if self.data:
            return self.data.pop(0)
        return await super().handle_DATA(server, session, envelope)
