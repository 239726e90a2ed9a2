"""What the pipeline works with, built by `worker.wiring.services` (or a test)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from channels.base import Channel
from schedules import Profiles
from worker.clock import Clock
from worker.contact_log import ContactLog
from worker.db.writer import LogWriter
from worker.jobs.book import JobBook
from worker.messages.render import Renderer
from worker.queue.agenda import Agenda
from worker.queue.throttle import Throttle
from worker.settings import Settings


@dataclass
class Services:
    log: ContactLog
    jobs: JobBook  # whether a job's account was erased since it was accepted
    write: LogWriter  # the log's writes from the event loop go through here (group commit)
    renderer: Renderer
    channels: Mapping[str, Channel]
    agenda: Agenda
    throttle: Throttle
    clock: Clock
    profiles: Profiles
    settings: Settings
