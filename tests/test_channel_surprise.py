"""A channel that raises something none of its three errors (a bug, a library's
surprise, `UnicodeEncodeError` from an address it did not expect): the delivery is
recorded `unknown` — the provider may have acted — and the job is kept as a dead
letter with the reason; nothing is left `claimed`, nothing is sent again. The real
pipeline, log and Redis; the channel is a test double beside the protocol."""

from __future__ import annotations

import asyncio
from typing import Any

from conftest import job_data
from harness import WEDNESDAY_10

from channels.base import Message, SendResult
from worker.clock import FixedClock
from worker.contact_log import ContactLog
from worker.db.writer import LogWriter
from worker.jobs.book import JobBook
from worker.jobs.parse import parse_job
from worker.messages.render import Renderer
from worker.pipeline import Pipeline, Services
from worker.policy import profiles
from worker.queue.agenda import Agenda
from worker.queue.envelope import envelope_for
from worker.queue.throttle import Throttle
from worker.settings import Settings


class Surprising:
    name = "email"
    provider = "smtp"
    rate = None

    def __init__(self) -> None:
        self.calls = 0

    def cost(self, text: str) -> int:
        return 1

    async def send(self, message: Message) -> SendResult:
        self.calls += 1
        "张伟@example.com".encode("ascii")  # what sendmail once raised for an SMTPUTF8 address
        raise AssertionError("not reached")

    async def close(self) -> None:
        pass


def test_an_unexpected_channel_error_is_unknown_and_dead_lettered(log: ContactLog, redis_client: Any) -> None:
    channel = Surprising()
    settings = Settings.from_env({"DUNNING_SECRET_KEY": "s" * 32})
    services = Services(log=log, jobs=JobBook(log), write=LogWriter(log.engine), renderer=Renderer(),
                        channels={"email": channel},
                        agenda=Agenda(redis_client), throttle=Throttle(redis_client), clock=FixedClock(WEDNESDAY_10),
                        profiles=profiles(None), settings=settings)
    job = parse_job(job_data(debtor__consent={"email": True, "sms": False, "voice": False}), profiles(None)).job
    assert job is not None
    pipeline = Pipeline(services)

    async def twice() -> tuple[str, str]:
        first = await pipeline.handle(envelope_for(job))
        return first, await pipeline.handle(envelope_for(job))  # the queue delivers it again

    first, again = asyncio.run(twice())
    services.write.close()
    assert first == "unknown" and again in ("duplicate", "deferred") and channel.calls == 1, "not sent again"
    [delivery] = [r for r in log.history() if r["kind"] == "delivery" and r["status"] != "claimed"]
    assert delivery["status"] == "unknown" and "UnicodeEncodeError" in delivery["error_text"]
    [kept] = log.dead_letters()
    assert kept["origin"] == "channel" and "UnicodeEncodeError from the email channel" in kept["reason"]
