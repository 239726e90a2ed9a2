"""Email over SMTP with aiosmtplib: a small pool of reused connections per process.

Each reminder has one Message-ID, derived from its delivery key, so a retry after a
dropped connection is recognisably the same message. 4xx replies are transient,
5xx permanent, and 5.1.x ("no such mailbox") marks the address invalid. Connection
errors and 421/451 are retried here, quickly and within a deadline; anything longer
goes back to the worker, which re-decides before the next try.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from email.generator import BytesGenerator
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from urllib.parse import unquote, urlsplit

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from channels.base import Limits, Message, PermanentError, SendResult, TransientError

_QUICK_CODES = {421, 451}


class EmailChannel:
    name = "email"
    limits = Limits()

    def __init__(self, url: str, from_address: str, from_name: str = "", pool_size: int = 4,
                 timeout: float = 30.0, retry_deadline: float = 20.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("DUNNING_SMTP_URL must look like smtp://host:587 or smtps://user:pass@host:465")
        self._options = {
            "hostname": parts.hostname,
            "port": parts.port or (465 if parts.scheme == "smtps" else 25),
            "username": unquote(parts.username) if parts.username else os.environ.get("DUNNING_SMTP_USERNAME"),
            "password": unquote(parts.password) if parts.password else os.environ.get("DUNNING_SMTP_PASSWORD"),
            "use_tls": parts.scheme == "smtps",
            "start_tls": None if parts.scheme == "smtp" else False,  # STARTTLS whenever the server offers it
            "timeout": timeout,
        }
        self.from_address, self.from_name = from_address, from_name
        self.domain = from_address.rpartition("@")[2] or "localhost"
        self.retry_deadline = retry_deadline
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(pool_size)

    def message_id(self, key: str) -> str:
        return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{self.domain}>"

    def build(self, message: Message) -> bytes:
        """The message as sent. Built with the email package's compat32 classes, which cost a
        quarter of `EmailMessage` per message, and serialised here: no re-folding, so
        List-Unsubscribe stays on one line (RFC 8058); the subject is RFC 2047-encoded."""
        email: MIMEBase
        if message.html:
            email = MIMEMultipart("alternative")
            email.attach(MIMEText(message.text, "plain", "utf-8"))
            email.attach(MIMEText(message.html, "html", "utf-8"))
        else:
            email = MIMEText(message.text, "plain", "utf-8")
        email["From"] = formataddr((self.from_name, self.from_address), "utf-8")
        email["To"] = message.to
        email["Subject"] = Header(message.subject or "", "utf-8", header_name="Subject").encode()
        email["Message-ID"] = self.message_id(message.key)
        if message.created_at is not None:
            email["Date"] = format_datetime(message.created_at)
        if message.unsubscribe_url:
            email["List-Unsubscribe"] = (f"<{message.unsubscribe_url}>, "
                                         f"<mailto:{self.from_address}?subject=unsubscribe>")
            email["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        for name, value in message.headers.items():
            email[name] = value
        buffer = io.BytesIO()
        BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0).flatten(email, linesep="\r\n")
        return buffer.getvalue()

    async def send(self, message: Message) -> SendResult:
        data = self.build(message)
        retrying = AsyncRetrying(retry=retry_if_exception(_quick), stop=stop_after_delay(self.retry_deadline),
                                 wait=wait_exponential(multiplier=0.2, max=2.0), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    await self._send_once(data, message.to)
        except aiosmtplib.SMTPRecipientsRefused as refused:
            raise _classify(refused.recipients[0].code, refused.recipients[0].message) from None
        except aiosmtplib.SMTPResponseException as error:
            raise _classify(error.code, error.message) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            raise TransientError("connection", f"{type(error).__name__}: {error}") from None
        return SendResult("smtp", self.message_id(message.key))

    async def _send_once(self, data: bytes, to: str) -> None:
        async with self._slots:
            client = await self._connection()
            try:
                refused, _reply = await client.sendmail(self.from_address, [to], data)
            except BaseException:
                client.close()
                raise
            self._idle.put_nowait(client)
        if refused:  # the server accepted the message but not this recipient
            code, text = refused[to]
            raise aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(code, text, to)])

    async def _connection(self) -> aiosmtplib.SMTP:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                return client
        client = aiosmtplib.SMTP(**self._options)  # type: ignore[arg-type]
        await client.connect()
        return client

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                client.close()


def _quick(error: BaseException) -> bool:
    """Worth retrying within seconds: the connection dropped, or the server asked us to."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code in _QUICK_CODES
    return isinstance(error, (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError,
                              aiosmtplib.SMTPConnectTimeoutError, ConnectionError))


def _classify(code: int, text: str) -> TransientError | PermanentError:
    if 400 <= code < 500:
        return TransientError(str(code), text)
    return PermanentError(str(code), text, invalid_address=text.lstrip().startswith("5.1."))
