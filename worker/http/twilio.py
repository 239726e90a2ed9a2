"""What Twilio sends back: status callbacks (/twilio/status) and SMS replies (/twilio/inbound).

Every request is checked against `X-Twilio-Signature`, computed over the exact public
URL (`DUNNING_PUBLIC_URL` + path: behind a proxy the Host header is not the URL Twilio
signed). A bad or missing signature gets 403 and changes nothing. Replies to an SMS
are TwiML in the response, so a confirmation goes out once, with the request. The
contact log is written from a thread pool, never on the event loop, since a write may
wait for the log's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from xml.sax.saxutils import escape as xml_escape

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from twilio.request_validator import RequestValidator

from channels.twilio_api import invalid_number
from worker.contact_log import ContactLog
from worker.contact_log.kinds import Event, Kind
from worker.events import EventError, Events
from worker.http import replies
from worker.http.callback_order import verdict
from worker.masking import mask
from worker.settings import Settings

logger = logging.getLogger("dunning.web")


def apply_status(log: ContactLog, sid: str, state: str, code: str | None, at: datetime) -> None:
    """Under the lock of the delivery's account's chain (and its recipient's, which an
    invalid number suppresses), so two callbacks for one SID arriving at once (any
    process) are ordered, and a step back is never applied."""
    with log.within(None) as conn:
        found = log.by_provider_id(sid, conn) if sid else None
        log.lock(conn, log.chains_of([found.account_id], [log.vault.index(found.recipient)]) if found is not None
                 else log.chains_of([None]))
        found = log.by_provider_id(sid, conn) if found is not None else None  # again, under its account's lock
        if found is None:
            log.record(Event(Kind.CALLBACK, state or "unknown", provider="twilio", provider_message_id=sid or None,
                             error_text="no delivery has this SID"), at, conn)
            return
        why = verdict(found.channel, found.applied, state)
        if why is not None:
            log.record(Event(Kind.CALLBACK, state, job_id=found.job_id, invoice_id=found.invoice_id,
                             account_id=found.account_id, provider="twilio", provider_message_id=sid,
                             error_code=code, error_text=f"not applied: {why}"), at, conn)
            return
        log.record(Event(Kind.DELIVERY, state, delivery_id=found.id, job_id=found.job_id,
                         invoice_id=found.invoice_id,
                         account_id=found.account_id, provider="twilio", provider_message_id=sid,
                         error_code=code, detail={"callback": True}), at, conn)
        if invalid_number(code) and found.channel == "sms":  # S-INVALID
            log.suppress(found.account_id, found.recipient, "sms", f"invalid address: Twilio {code}", at,
                         code=code, conn=conn)


def router(log: ContactLog, settings: Settings, now: Callable[[], datetime]) -> APIRouter:
    routes = APIRouter()
    events = Events(log, None)
    validator = RequestValidator(settings.twilio_auth_token) if settings.twilio_auth_token else None

    async def signed_form(request: Request) -> dict[str, str] | None:
        form = {key: str(value) for key, value in (await request.form()).items()}
        url = settings.public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        signature = request.headers.get("x-twilio-signature", "")
        if validator is None or not signature or not validator.validate(url, form, signature):
            logger.warning("refused %s: signature does not verify against %s", request.url.path, url)
            return None
        return form

    @routes.post("/twilio/status")
    async def status(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("signature does not verify", status_code=403)
        sid = form.get("MessageSid") or form.get("CallSid") or ""
        state = (form.get("MessageStatus") or form.get("CallStatus") or "").lower()
        await run_in_threadpool(apply_status, log, sid, state, form.get("ErrorCode") or None, now())
        return Response(status_code=204)

    def answer_reply(form: Mapping[str, str], at: datetime) -> str | None:
        """Act on an SMS reply and keep it; the answer to send back, if any."""
        sender, body = form.get("From", ""), form.get("Body", "")
        kind = replies.intent(body)
        chinese = replies.chinese(body)
        me = settings.sender.for_locale("zh-CN" if chinese else "en-US")
        reply: str | None = None
        try:
            if kind == "optout":
                applied = events.optout(sender, at, by="sms-reply", reason=f"replied {replies.normalized(body)}")
                # One confirmation, never a second; with OptOutType, Twilio has confirmed it itself.
                if applied.changed and "OptOutType" not in form:
                    reply = (f"【{me['name']}】您已退订，不会再收到本号码的短信。回复START可重新订阅。" if chinese else
                             f"{me['name']}: you are unsubscribed and will get no more texts from this number. "
                             "Reply START to resubscribe.")
            elif kind == "optin":
                events.optin(sender, at, by="sms-reply")
                if "OptOutType" not in form:
                    reply = (f"【{me['name']}】您已重新订阅。回复 TD 退订。" if chinese else
                             f"{me['name']}: you are subscribed again. Reply STOP to unsubscribe.")
            elif kind == "help":
                reply = (f"【{me['name']}】客服电话 {me['phone']}，邮箱 {me['email']}。回复 TD 退订。" if chinese else
                         f"{me['name']}: billing questions? Call {me['phone']} or email {me['email']}. "
                         "Reply STOP to unsubscribe.")
        except EventError as error:  # not a number we can name: keep the text for a person
            kind, reply = "other", None
            logger.warning("inbound from an unusable number: %s", error)
        log.record(Event(Kind.INBOUND, kind, provider="twilio", provider_message_id=form.get("MessageSid"),
                         address=sender or None, detail={"from": sender, "to": form.get("To"), "body": body,
                                                         "replied": reply is not None}), at)
        logger.info("inbound %s from %s", kind, mask("phone", sender))
        return reply

    @routes.post("/twilio/inbound")
    async def inbound(request: Request) -> Response:
        form = await signed_form(request)
        if form is None:
            return Response("signature does not verify", status_code=403)
        reply = await run_in_threadpool(answer_reply, form, now())
        return Response(_twiml(reply), media_type="application/xml")

    return routes


def _twiml(reply: str | None) -> str:
    message = f"<Message>{xml_escape(reply)}</Message>" if reply else ""
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{message}</Response>'
