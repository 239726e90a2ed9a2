"""The one builder: settings in; the contact log, Redis, the broker, the clock, the
channels, the pipeline's services and the webhooks' dispatcher out. Entry points (`actors.py`, `api.py`, the
CLI, `dunning simulate`) build through here and nowhere else, so a setting means the
same thing wherever it is read.

Nothing here runs on import. `services` runs inside the worker's event loop, because
the channel clients (aiosmtplib, twilio's aiohttp) belong to the loop that made them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries

from channels.base import Channel
from channels.email import EmailChannel
from channels.sms import SmsChannel
from channels.twilio_api import TwilioAccount
from channels.voice import VoiceChannel
from worker.clock import Clock, RedisClock, SystemClock
from worker.contact_log import ContactLog
from worker.contact_log.checkpoints import Checkpoints
from worker.contact_log.note import NoteError, Signer
from worker.db.writer import LogWriter
from worker.errors import ConfigError
from worker.jobs.book import JobBook
from worker.messages.library import Library
from worker.messages.render import Renderer
from worker.pipeline.services import Services
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.broker import make_broker, redis_client
from worker.queue.throttle import Throttle
from worker.records.book import RecordBook
from worker.settings import Settings
from worker.users.keys import Keys
from worker.users.people import People
from worker.webhooks.dispatcher import Dispatcher, Endpoint
from worker.webhooks.outbox import Outbox


@dataclass(frozen=True)
class Books:
    """Each domain's book over the one log, built here once and handed to the entry points
    that use them (`create_app`, the CLI): a signature then says what a module touches."""

    people: People
    keys: Keys
    outbox: Outbox
    library: Library
    records: RecordBook
    jobs: JobBook
    checkpoints: Checkpoints


def books(log: ContactLog) -> Books:
    return Books(People(log), Keys(log), Outbox(log), Library(log), RecordBook(log), JobBook(log), Checkpoints(log))


def signer(settings: Settings) -> Signer | None:
    """The checkpoint key (`DUNNING_CHECKPOINT_KEY`), if one is set; a bad one is a ConfigError."""
    if settings.checkpoint_key is None:
        return None
    try:
        return Signer.parse(settings.checkpoint_key)
    except NoteError as error:
        raise ConfigError(f"DUNNING_CHECKPOINT_KEY: {error}") from None


class Links:
    """What a server reaches beyond the log — Redis (the agenda, dramatiq's broker) and the
    channels — each built on first use, so the pages that read only the log work with
    Redis away (and a test's server needs no Redis it does not use). Built by the entry
    point (`dunning serve`) and handed to `create_app`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def client(self) -> redis.Redis:
        return redis_for(self.settings)

    @cached_property
    def agenda(self) -> Agenda:
        return Agenda(self.client)

    @cached_property
    def broker(self) -> RedisBroker:
        return broker(self.settings)

    def channels(self) -> dict[str, Channel]:
        """The configured channels, new each time: the caller closes them (`channels`)."""
        return channels(self.settings)


def log(settings: Settings, *, migrate: bool = False, check: bool = True) -> ContactLog:
    """The contact log. With `migrate` (`dunning worker`, `serve`, `migrate`), its schema
    is brought up to date; otherwise, with `check`, it must be (`SchemaError` says to
    migrate) — nothing else writes the schema. Without either, nothing connects yet."""
    opened = ContactLog.open(settings.database_url, settings.master_key)
    if migrate:
        return opened.migrate(chains=settings.log_chains)
    if check:
        opened.require_schema()
    return opened


def redis_for(settings: Settings) -> redis.Redis:
    """A Redis client for the agenda, the clock and the throttle (with timeouts)."""
    return redis_client(settings.redis_url)


def broker(settings: Settings, extra: Sequence[dramatiq.Middleware] = (),
           retries: Retries | None = None) -> RedisBroker:
    """dramatiq's Redis broker with dunning's middleware and the heartbeat settings."""
    return make_broker(settings.redis_url, extra=extra, retries=retries, heartbeat_ms=settings.broker_heartbeat_ms,
                       maintenance_chance=settings.broker_maintenance_chance)


def clock(settings: Settings, client: redis.Redis | None = None) -> Clock:
    """DUNNING_CLOCK: `system` (production: the wall clock), or `redis` (the demo's and the
    tests' clock, shared by every process, moved by hand). Chosen here and only here."""
    if settings.clock == "system":
        return SystemClock()
    return RedisClock(client if client is not None else redis_for(settings))


def channels(settings: Settings) -> dict[str, Channel]:
    """The channels that are configured; a missing one makes the plan fall through to the next."""
    found: dict[str, Channel] = {}
    if settings.smtp_url:
        found["email"] = EmailChannel(settings.smtp_url, settings.smtp_from, settings.sender.name,
                                      timeout=settings.smtp_timeout_s, per_second=settings.email_per_second,
                                      username=settings.smtp_username, password=settings.smtp_password)
    if settings.twilio_account_sid and settings.twilio_auth_token:
        account = TwilioAccount(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_base_url)
        callback = f"{settings.public_url}/twilio/status"
        if settings.twilio_from or settings.twilio_messaging_service_sid:
            found["sms"] = SmsChannel(account, settings.twilio_from, settings.twilio_messaging_service_sid,
                                      status_callback=callback, per_second=settings.sms_per_second)
        if settings.twilio_from:
            found["voice"] = VoiceChannel(account, settings.twilio_from, status_callback=callback,
                                          per_second=settings.calls_per_second)
    return found


def services(settings: Settings, contact_log: ContactLog, *, client: redis.Redis | None = None,
             at: Clock | None = None, throttle: Throttle | None = None) -> Services:
    """Everything the pipeline works with. `at` and `throttle` replace the configured
    clock and Redis throttle (the simulation's own clock, no rate limits)."""
    client = client if client is not None else redis_for(settings)
    at = at if at is not None else clock(settings, client)
    kept = books(contact_log)
    kept.library.import_folder(settings.template_dir, at.now())
    return Services(log=contact_log, jobs=kept.jobs, write=LogWriter(contact_log.engine, contact_log.lock),
                    renderer=Renderer(kept.library.published(), settings.default_locale),
                    channels=channels(settings), agenda=Agenda(client),
                    throttle=throttle if throttle is not None else Throttle(client),
                    clock=at, profiles=profiles(settings.profile_dir), settings=settings)


def webhooks(settings: Settings, outbox: Outbox, at: Clock, wall: Callable[[], float]) -> Dispatcher | None:
    """The outbox's dispatcher for the worker's supervisor, when an endpoint is configured."""
    if settings.webhook_url is None or settings.webhook_secret is None:
        return None
    return Dispatcher(outbox, Endpoint(settings.webhook_url, settings.webhook_secret), at, wall)
