"""Email over SMTP with aiosmtplib: a small pool of reused connections per process.

Each reminder has one Message-ID, derived from its delivery key, so a retry after a
dropped connection is recognisably the same message. 4xx replies are transient,
5xx permanent, and 5.1.x ("no such mailbox") marks the address invalid. Connection
errors and 421/451 before the message is handed over are retried here, quickly and
within a deadline; anything longer goes back to the worker, which re-decides before
the next try. Once the message's data has been sent, a timeout or a dropped
connection may come after the server took it: that is an `UnknownOutcome`, never
resent blindly.

An internationalized address (`张伟@example.com`) goes with SMTPUTF8 (RFC 6531) when
the server offers it; a server that does not cannot take it, which no retry changes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from email.header import Header
from email.utils import format_datetime, formataddr
from urllib.parse import unquote, urlsplit

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from channels.base import Message, PermanentError, Rate, SendResult, TransientError, UnknownOutcome

_QUICK_CODES = {421, 451}


class EmailChannel:
    name = "email"
    provider = "smtp"

    def __init__(self, url: str, from_address: str, from_name: str = "", pool_size: int = 4,
                 timeout: float = 30.0, retry_deadline: float = 20.0, per_second: float | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        """Credentials in the URL (`smtps://user:pass@host:465`) win over `username`/`password`."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("DUNNING_SMTP_URL must look like smtp://host:587 or smtps://user:pass@host:465")
        # A relay's sending quota (e.g. SES's 14/s), when it has one.
        self.rate = Rate(f"smtp:{parts.hostname}:{parts.port or ''}", per_second) if per_second else None
        self._options = {
            "hostname": parts.hostname,
            "port": parts.port or (465 if parts.scheme == "smtps" else 25),
            "username": unquote(parts.username) if parts.username else username,
            "password": unquote(parts.password) if parts.password else password,
            "use_tls": parts.scheme == "smtps",
            "start_tls": None if parts.scheme == "smtp" else False,  # STARTTLS whenever the server offers it
            "timeout": timeout,
        }
        self.from_address, self.from_name = from_address, from_name
        self.domain = from_address.rpartition("@")[2] or "localhost"
        self._from_header = formataddr((from_name, from_address), "utf-8")
        self.retry_deadline = retry_deadline
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(pool_size)

    def cost(self, text: str) -> int:
        return 1

    def message_id(self, key: str) -> str:
        return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{self.domain}>"

    def build(self, message: Message) -> bytes:
        """The message as sent, written as bytes directly.

        The email package's generator costs ~0.4 ms per message, more than rendering and
        logging together, for a structure that never varies: headers, then one UTF-8
        text part (and an HTML part), base64-encoded. Long header lines are folded at
        spaces (List-Unsubscribe between its two URIs; a URI itself cannot be folded,
        which is why the token in it is kept short); the subject is RFC 2047-encoded.
        Header values are checked for line breaks (header injection).
        """
        headers = [("From", self._from_header), ("To", message.to),
                   ("Subject", Header(message.subject or "", "utf-8", header_name="Subject").encode()),
                   ("Message-ID", self.message_id(message.key))]
        if message.created_at is not None:
            headers.append(("Date", format_datetime(message.created_at)))
        if message.unsubscribe_url:
            headers.append(("List-Unsubscribe",
                            f"<{message.unsubscribe_url}>, <mailto:{self.from_address}?subject=unsubscribe>"))
            if message.unsubscribe_url.startswith("https://"):  # RFC 8058 §3.1: one-click needs https
                headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers.append(("MIME-Version", "1.0"))
        lines = []
        for name, value in headers:
            if "\r" in value or "\n" in value.replace("\n ", ""):  # Header.encode folds with "\n "
                raise ValueError(f"the {name} header contains a line break")
            if "\n " in value:
                lines.append(f"{name}: {value}".replace("\n ", "\r\n "))
            else:
                lines.append(_fold(name, value))
        if not message.html:
            lines.extend(_part_headers("plain"))
            return "\r\n".join(lines).encode() + b"\r\n\r\n" + _base64(message.text)
        boundary = "=_" + hashlib.sha256(message.key.encode()).hexdigest()[:30]  # "=_" is never in base64
        lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        marker = f"\r\n--{boundary}\r\n".encode()
        return b"".join([
            "\r\n".join(lines).encode(), b"\r\n", marker,
            "\r\n".join(_part_headers("plain")).encode(), b"\r\n\r\n", _base64(message.text), marker,
            "\r\n".join(_part_headers("html")).encode(), b"\r\n\r\n", _base64(message.html),
            f"\r\n--{boundary}--\r\n".encode()])

    async def send(self, message: Message) -> SendResult:
        try:
            data = self.build(message)
        except ValueError as error:  # no retry will make this message sendable
            raise PermanentError("message", str(error)) from None
        retrying = AsyncRetrying(retry=retry_if_exception(_quick), stop=stop_after_delay(self.retry_deadline),
                                 wait=wait_exponential(multiplier=0.2, max=2.0), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    await self._send_once(data, message.to)
        except _HandedOver as handed:
            raise UnknownOutcome("data", f"the connection failed after the message was sent "
                                         f"({type(handed.error).__name__}: {handed.error}); not resent") from None
        except aiosmtplib.SMTPNotSupported as error:
            raise PermanentError("smtputf8", f"the server cannot take an internationalized address ({error})") from None
        except aiosmtplib.SMTPRecipientsRefused as refused:
            raise _classify(refused.recipients[0].code, refused.recipients[0].message) from None
        except aiosmtplib.SMTPResponseException as error:
            raise _classify(error.code, error.message) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            raise TransientError("connection", f"{type(error).__name__}: {error}") from None
        return SendResult(self.provider, self.message_id(message.key))

    async def _send_once(self, data: bytes, to: str) -> None:
        """MAIL, RCPT, DATA on a pooled connection. Up to DATA nothing has been handed
        over, so any failure is safe to try again; after it, see `_HandedOver`."""
        async with self._slots:
            client = await self._connection()
            try:
                if client.is_ehlo_or_helo_needed:
                    await client.ehlo()
                utf8 = not (to.isascii() and self.from_address.isascii())
                if utf8 and not client.supports_extension("smtputf8"):
                    raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not offered")
                encoding = "utf-8" if utf8 else "ascii"
                try:
                    await client.mail(self.from_address, options=["SMTPUTF8"] if utf8 else [], encoding=encoding)
                    await client.rcpt(to, encoding=encoding)
                except aiosmtplib.SMTPResponseException:
                    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                        await client.rset()
                    raise
                try:
                    await client.data(data)
                except aiosmtplib.SMTPResponseException:
                    raise  # the server answered: it did not take the message
                except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
                    raise _HandedOver(error) from error
            except BaseException:
                client.close()
                raise
            self._idle.put_nowait(client)

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


class _HandedOver(Exception):
    """The connection failed after the message's data was sent: the server may have it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _fold(name: str, value: str, limit: int = 78) -> str:
    """A header line folded at its spaces to lines of at most `limit` characters (RFC 5322
    §2.2.3; 998 is the hard limit): a value with no space to fold at is left whole."""
    words = value.split(" ")
    lines, line = [], f"{name}:"
    for word in words:
        if len(line) + 1 + len(word) > limit and line.strip() and line != f"{name}:":
            lines.append(line)
            line = ""
        line = f"{line} {word}"
    lines.append(line)
    return "\r\n".join(lines)


def _part_headers(subtype: str) -> list[str]:
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: base64"]


def _base64(text: str) -> bytes:
    """Text in canonical form (CRLF line breaks), base64 in lines of 76 characters (RFC 2045)."""
    canonical = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return base64.encodebytes(canonical.encode("utf-8")).replace(b"\n", b"\r\n").rstrip(b"\r\n")


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
