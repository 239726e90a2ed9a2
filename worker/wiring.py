"""Wiring: settings in, the pipeline's services out. Run inside the worker's event loop,
because the channel clients (aiosmtplib, twilio's aiohttp) belong to the loop that made them."""

from __future__ import annotations

from channels.base import Channel
from channels.email import EmailChannel
from channels.sms import SmsChannel
from channels.twilio_api import TwilioAccount
from channels.voice import VoiceChannel
from worker.clock import Clock, RedisClock
from worker.contact_log import ContactLog
from worker.contact_log.writer import LogWriter
from worker.messages.render import Renderer
from worker.pipeline.reminder import Services
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.broker import redis_client
from worker.queue.throttle import Throttle
from worker.settings import Settings


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The channels that are configured; a missing one makes the plan fall through to the next."""
    channels: dict[str, Channel] = {}
    if settings.smtp_url:
        channels["email"] = EmailChannel(settings.smtp_url, settings.smtp_from, settings.sender.name,
                                         timeout=settings.smtp_timeout_s, per_second=settings.email_per_second,
                                         username=settings.smtp_username, password=settings.smtp_password)
    if settings.twilio_account_sid and settings.twilio_auth_token:
        account = TwilioAccount(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_base_url)
        callback = f"{settings.public_url}/twilio/status"
        if settings.twilio_from or settings.twilio_messaging_service_sid:
            channels["sms"] = SmsChannel(account, settings.twilio_from, settings.twilio_messaging_service_sid,
                                         status_callback=callback, per_second=settings.sms_per_second)
        if settings.twilio_from:
            channels["voice"] = VoiceChannel(account, settings.twilio_from, status_callback=callback,
                                             per_second=settings.calls_per_second)
    return channels


def build_services(settings: Settings, clock: Clock | None, log: ContactLog | None = None) -> Services:
    client = redis_client(settings.redis_url)
    if clock is None:
        clock = RedisClock(client)
    log = log or ContactLog.open(settings.database_url)
    return Services(log=log, write=LogWriter(log.engine),
                    renderer=Renderer(settings.template_dir, settings.default_locale),
                    channels=build_channels(settings), agenda=Agenda(client), throttle=Throttle(client), clock=clock,
                    profiles=profiles(), settings=settings)
