"""What SMS and voice share: the async Twilio client and the table of Twilio's errors.

The client is the real `twilio` library on its aiohttp transport, created on the
worker's event loop. `base_url` points it at Twilio, or at the local sandbox in the
demo and the tests — the client itself is never replaced.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay
from tenacity.wait import wait_base
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import ChannelError, Message, NextWindow, PermanentError, SendResult, TransientError, UnknownOutcome

Kind = Literal["permanent", "invalid", "transient", "next_window"]
T = TypeVar("T")

# COMPLIANCE.md "Transport rules"; every entry can be overridden by configuration.
DEFAULT_ERRORS: Mapping[int, Kind] = {
    21211: "invalid", 21614: "invalid", 21635: "invalid", 30005: "invalid", 30006: "invalid", 21217: "invalid",
    21610: "permanent", 21612: "permanent", 21408: "permanent", 21606: "permanent", 21212: "permanent",
    30004: "permanent", 30007: "permanent",  # blocked, carrier-filtered: a person reads the log
    20429: "transient", 30001: "transient", 30003: "transient", 30008: "transient",
    30036: "next_window",
}

# A box per create call, set by the caller and filled by the HTTP client: the request
# runs in a child task (asyncio.wait_for), which sees the box but not later .set()s.
_headers: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("twilio_headers", default=None)


class _RecordingHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """Twilio's own aiohttp client; it also keeps the reply's headers (Retry-After) for
    the task that made the request, which the library's exceptions do not carry."""

    async def request(self, *args: Any, **kwargs: Any) -> Response:
        response = await super().request(*args, **kwargs)
        box = _headers.get()
        if box is not None:
            box.update(response.headers or {})
        return response


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth_token: str
    base_url: str = "https://api.twilio.com"

    def client(self) -> Client:
        client = Client(self.account_sid, self.auth_token, http_client=_RecordingHttpClient())
        client.api.base_url = self.base_url
        return client


async def call_twilio(create: Callable[[], Awaitable[T]], errors: Mapping[int, Kind], timeout: float,
                      retry_deadline: float) -> T:
    """Run one create call: quick retries of 20429 (never processed, always safe), honouring
    Retry-After; a timeout or a 5xx is an unknown outcome, never retried blindly."""

    async def once() -> T:
        headers: dict[str, str] = {}
        _headers.set(headers)
        try:
            return await asyncio.wait_for(create(), timeout)
        except TimeoutError:
            raise UnknownOutcome("timeout", f"no reply from Twilio within {timeout:g} s") from None
        except TwilioRestException as error:
            raise classify(error, errors, headers) from None
        except TwilioException as error:  # TwilioServiceException (9.10+) is not a TwilioRestException
            raise UnknownOutcome("twilio", str(error)) from None
        except OSError as error:  # could not connect: nothing was sent
            raise TransientError("connection", f"{type(error).__name__}: {error}") from None

    retrying = AsyncRetrying(retry=retry_if_exception(_never_processed), stop=stop_after_delay(retry_deadline),
                             wait=_RetryAfter(), reraise=True)
    async for attempt in retrying:
        with attempt:
            return await once()
    raise AssertionError("unreachable")  # pragma: no cover


class TwilioChannel:
    """What SMS and voice share: one client per event loop, one create call per message."""

    name: str
    provider = "twilio"
    resource: str  # the client's collection: "messages" or "calls"

    def __init__(self, account: TwilioAccount, errors: Mapping[int, Kind], timeout: float,
                 retry_deadline: float) -> None:
        self.account, self.errors, self.timeout, self.retry_deadline = account, errors, timeout, retry_deadline
        self._client: Any = None

    def parameters(self, message: Message) -> dict[str, Any]:
        raise NotImplementedError

    async def send(self, message: Message) -> SendResult:
        params = self.parameters(message)
        if self._client is None:
            self._client = self.account.client()  # on the running loop: aiohttp binds to it
        collection = getattr(self._client, self.resource)
        created = await call_twilio(lambda: collection.create_async(**params), self.errors, self.timeout,
                                    self.retry_deadline)
        return SendResult(self.provider, created.sid)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None


def classify(error: TwilioRestException, errors: Mapping[int, Kind], headers: Mapping[str, str]) -> ChannelError:
    code, status, text = error.code, error.status, str(error.msg)
    if status >= 500:
        return UnknownOutcome(str(code or status), text)
    kind = errors.get(code or 0) or ("transient" if status == 429 else "permanent")
    if kind == "transient":
        return TransientError(str(code or status), text, _retry_after(headers))
    if kind == "next_window":
        return NextWindow(str(code), text)
    return PermanentError(str(code or status), text, invalid_address=kind == "invalid")


def invalid_number(code: str | int | None, errors: Mapping[int, Kind] = DEFAULT_ERRORS) -> bool:
    """Whether a Twilio error code (from a reply or a status callback) proves the number
    does not exist or cannot take messages: the one table both paths read."""
    return str(code or "").isdigit() and errors.get(int(str(code))) == "invalid"


def _never_processed(error: BaseException) -> bool:
    return isinstance(error, TransientError) and error.code in ("20429", "429", "connection")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return None
    return None


class _RetryAfter(wait_base):
    """Wait as long as Twilio asked (Retry-After), else back off from 0.5 s up to 4 s."""

    def __call__(self, retry_state: Any) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, TransientError) and error.retry_after is not None:
            return float(error.retry_after)
        return float(min(0.5 * 2 ** (retry_state.attempt_number - 1), 4.0))
