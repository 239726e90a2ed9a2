"""The floor dunning is measured against in bench/throughput.py: what a user would write
instead of dunning, run by the same dramatiq settings.

An async actor that takes the same queued job, renders the same template (the same
sandboxed Jinja renderer, `compose`), writes the same MIME and sends it over the same
pool of aiosmtplib connections (`channels.email`) — and does nothing else: no policy,
no time-of-day rules, no contact log, no claim, no sealing, no chain. What dunning
spends beyond this is what its promises cost.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import dramatiq

from channels.base import Message
from channels.email import EmailChannel
from worker.jobs.contract import Job
from worker.messages.context import compose
from worker.messages.render import Renderer
from worker.queue.broker import make_broker
from worker.settings import Settings

QUEUE = "bare"
TODAY = date(2026, 12, 2)  # the day throughput.py sets the clock to (pre_due_7 for its jobs)

settings = Settings.from_env()
broker = make_broker(os.environ["DUNNING_REDIS_URL"])
broker.declare_queue(QUEUE)
dramatiq.set_broker(broker)
renderer = Renderer(settings.template_dir, settings.default_locale)
assert settings.smtp_url is not None
email = EmailChannel(settings.smtp_url, settings.smtp_from, settings.sender.name, timeout=settings.smtp_timeout_s)


@dramatiq.actor(actor_name=QUEUE, queue_name=QUEUE)
async def bare(payload: dict[str, Any]) -> None:
    job = Job.model_validate(payload["job"])
    assert job.debtor.email is not None
    url = f"{settings.public_url}/unsubscribe/{job.debtor.account_id}"
    rendered = compose(renderer, job, "pre_due_7", "email", TODAY, settings.sender, url)
    await email.send(Message(key=f"{job.job_id}#email", channel="email", to=job.debtor.email, text=rendered.text,
                             locale=rendered.locale, subject=rendered.subject, html=rendered.html,
                             unsubscribe_url=url))
