"""A local server that speaks the part of Twilio's REST API dunning uses.

Twilio cannot be reached from tests or the demo, so the real `twilio` client is
pointed here instead (`client.api.base_url`). Same paths, form fields, JSON replies
and error bodies as `api.twilio.com/2010-04-01`; Twilio's magic test numbers; status
callbacks sent afterwards, signed with `X-Twilio-Signature`; a person's reply posted to
the inbound webhook on request (`reply`) and the TwiML answer sent back; every accepted
message and call written to an outbox folder. Failures can be scripted (429 with
Retry-After, 500, a reply that never comes) and so can call outcomes.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from channels.segments import count_segments
from worker.local.ports import free_port

API = "/2010-04-01/Accounts/{account}"
# Twilio's magic test numbers (https://www.twilio.com/docs/iam/test-credentials).
MAGIC_TO = {
    "+15005550001": (21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number."),
    "+15005550003": (21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' "
                            "number: {to}."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
MAGIC_FROM = {
    "+15005550001": (21212, "The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric "
                            "sender ID."),
    "+15005550007": (21606, "The 'From' phone number provided is not a valid, message-capable Twilio phone number "
                            "for this destination."),
}




class Sandbox:
    """Twilio's REST API for messages and calls on loopback: the magic test numbers
    fail as Twilio's do; everything else is queued, then reported delivered (or the call
    completed) through signed status callbacks. Tests script other answers by overriding
    `next_failure` and `final_status` (tests/fakes/twilio.py)."""

    callback_delay = 0.05  # seconds between one status callback and the next

    def __init__(self, outbox: Path, account_sid: str = "AC" + "0" * 32, auth_token: str = "sandbox-token") -> None:
        self.outbox, self.account_sid, self.auth_token = outbox, account_sid, auth_token
        outbox.mkdir(parents=True, exist_ok=True)
        self.resources: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, str]] = []
        self.callbacks: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(routes=[
            Route(API + "/Messages.json", self._create_message, methods=["POST"]),
            Route(API + "/Messages/{sid}.json", self._fetch, methods=["GET"]),
            Route(API + "/Calls.json", self._create_call, methods=["POST"]),
            Route(API + "/Calls/{sid}.json", self._fetch, methods=["GET"]),
        ])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def next_failure(self) -> dict[str, Any] | None:
        """An error to answer the next create request with, instead of creating it."""
        return None

    def final_status(self, to: str, default: str) -> str:
        """Where a message or call to `to` ends up."""
        return default

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> Sandbox:
        self.port = port = port or free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="twilio-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Twilio sandbox did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def sent(self, kind: str = "Messages") -> list[dict[str, Any]]:
        """What the sandbox accepted, from its outbox, oldest first."""
        found = [json.loads(p.read_text(encoding="utf-8")) for p in self.outbox.glob(f"{kind}-*.json")]
        return sorted(found, key=lambda r: r["_accepted_at"])

    def reply(self, url: str, from_: str, body: str, to: str = "+15005550006") -> tuple[int, list[str]]:
        """A person texts `body` from `from_`: Twilio posts it, signed, to the inbound webhook
        at `url`, and sends the TwiML <Message> replies back to them (written to the outbox).
        Returns the webhook's HTTP status and the replies sent."""
        sid = "SM" + secrets.token_hex(16)
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.account_sid, "From": from_, "To": to,
                  "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01"}
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        request = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST",
                                         headers={"X-Twilio-Signature": signature})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, twiml = answer.status, answer.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            return error.code, []
        sent = [m.text or "" for m in ElementTree.fromstring(twiml).iter("Message")] if twiml.strip() else []
        for text in sent:
            reply_sid = "SM" + secrets.token_hex(16)
            self._record("Messages", reply_sid, {"sid": reply_sid, "to": from_, "from": to, "body": text,
                                                 "status": "sent", "direction": "outbound-reply"}, {})
        return status, sent

    # -- the API ------------------------------------------------------------------

    async def _create_message(self, request: Request) -> Response:
        form, problem = await self._admit(request)
        if problem:
            return problem
        to, sender = form.get("To", ""), form.get("From", "")
        if not to or not form.get("Body"):
            return _error(21602 if not form.get("Body") else 21604, "A 'To' phone number and a 'Body' are required.")
        if not sender and not form.get("MessagingServiceSid"):
            return _error(21603, "A 'From' phone number is required.")
        if sender in MAGIC_FROM:
            code, text = MAGIC_FROM[sender]
            return _error(code, text.format(from_=sender))
        if to in MAGIC_TO:
            code, text = MAGIC_TO[to]
            return _error(code, text.format(to=to))
        sid = "SM" + secrets.token_hex(16)
        body = form["Body"]
        segments = _segments(body)
        resource = self._resource(request, "Messages", sid, form, {
            "body": body, "num_segments": str(segments), "status": "queued", "direction": "outbound-api",
            "messaging_service_sid": form.get("MessagingServiceSid"), "validity_period": form.get("ValidityPeriod")})
        final = self.final_status(to, "delivered")
        steps = ["sent", final] if final in ("delivered", "undelivered") else [final]
        self._later(form.get("StatusCallback"), sid, "Messages", steps)
        return JSONResponse(resource, status_code=201)

    async def _create_call(self, request: Request) -> Response:
        form, problem = await self._admit(request)
        if problem:
            return problem
        to = form.get("To", "")
        if not to or not form.get("From"):
            return _error(21201, "No 'To' number is specified" if not to else "No 'From' number is specified")
        if not form.get("Twiml") and not form.get("Url"):
            return _error(21205, "Url or Twiml is required")
        if to == "+15005550001":
            return _error(21217, f"Phone number {to} is not a valid phone number.")
        sid = "CA" + secrets.token_hex(16)
        resource = self._resource(request, "Calls", sid, form, {
            "status": "queued", "direction": "outbound-api", "twiml": form.get("Twiml"), "duration": None})
        final = self.final_status(to, "completed")
        steps = ["initiated", "ringing", "in-progress", final] if final == "completed" else ["initiated", "ringing",
                                                                                                final]
        self._later(form.get("StatusCallback"), sid, "Calls", steps)
        return JSONResponse(resource, status_code=201)

    async def _fetch(self, request: Request) -> Response:
        if not self._authorised(request):
            return _error(20003, "Authenticate", 401)
        resource = self.resources.get(request.path_params["sid"])
        if resource is None:
            return _error(20404, f"The requested resource {request.url.path} was not found", 404)
        return JSONResponse(resource)

    # -- helpers -------------------------------------------------------------------

    async def _admit(self, request: Request) -> tuple[dict[str, str], Response | None]:
        form = {k: str(v) for k, v in (await request.form()).items()}
        with self._lock:
            self.requests.append(form)
            failure = self.next_failure()
        if not self._authorised(request):
            return form, _error(20003, "Authenticate", 401)
        if failure is None:
            return form, None
        if "timeout" in failure:
            await asyncio.sleep(float(failure["timeout"]))
        status = int(failure.get("status", 500))
        headers = {"Retry-After": str(failure["retry_after"])} if "retry_after" in failure else {}
        code = int(failure.get("code", 20429 if status == 429 else 20500))
        return form, _error(code, failure.get("message", "Too Many Requests" if status == 429 else
                                               "Internal Server Error"), status, headers)

    def _authorised(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}" and \
            request.path_params.get("account") == self.account_sid

    def _resource(self, request: Request, kind: str, sid: str, form: Mapping[str, str],
                  extra: Mapping[str, Any]) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        resource = {"sid": sid, "account_sid": self.account_sid, "to": form.get("To"), "from": form.get("From"),
                    "date_created": now, "date_updated": now, "date_sent": None, "error_code": None,
                    "error_message": None, "price": None, "price_unit": "USD", "api_version": "2010-04-01",
                    "uri": f"/2010-04-01/Accounts/{self.account_sid}/{kind}/{sid}.json", **extra}
        self.resources[sid] = resource
        self._record(kind, sid, resource, form)
        return resource

    def _record(self, kind: str, sid: str, resource: Mapping[str, Any], form: Mapping[str, str]) -> None:
        record = {**resource, "_form": dict(form), "_accepted_at": next(self._order), "_received": time.monotonic()}
        (self.outbox / f"{kind}-{sid}.json").write_text(json.dumps(record, ensure_ascii=False, indent=1),
                                                        encoding="utf-8")

    def _later(self, callback: str | None, sid: str, kind: str, steps: list[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._advance(callback, sid, kind, steps))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _advance(self, callback: str | None, sid: str, kind: str, steps: list[str]) -> None:
        for status in steps:
            await asyncio.sleep(self.callback_delay)
            resource = self.resources[sid]
            resource["status"] = status
            resource["date_updated"] = formatdate(usegmt=True)
            if status == "undelivered":
                resource["error_code"], resource["error_message"] = 30005, "Unknown destination handset"
            if callback:
                await self._callback(callback, sid, kind, resource)

    async def _callback(self, url: str, sid: str, kind: str, resource: Mapping[str, Any]) -> None:
        if kind == "Messages":
            params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": str(resource["status"]),
                      "SmsStatus": str(resource["status"]), "To": str(resource["to"]), "From": str(resource["from"]),
                      "AccountSid": self.account_sid, "ApiVersion": "2010-04-01"}
            if resource.get("error_code"):
                params["ErrorCode"] = str(resource["error_code"])
        else:
            params = {"CallSid": sid, "CallStatus": str(resource["status"]), "To": str(resource["to"]),
                      "From": str(resource["from"]), "AccountSid": self.account_sid, "ApiVersion": "2010-04-01",
                      "Direction": "outbound-api"}
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    url, data=params, headers={"X-Twilio-Signature": signature},
                    timeout=aiohttp.ClientTimeout(total=10)) as reply:
                self.callbacks.append((params.get("MessageStatus") or params["CallStatus"], reply.status))
        except (TimeoutError, aiohttp.ClientError):
            self.callbacks.append((str(resource["status"]), 0))


def _error(code: int, message: str, status: int = 400, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _segments(body: str) -> int:
    return max(count_segments(body).parts, 1)
