"""Delivering the outbox: a loop of the `dunning worker` process, under its supervisor
(`worker.supervisor`), beside the agenda's dispatcher — never in the actors that send
reminders, so a slow or dead endpoint delays webhooks and nothing else.

Each round collects what the log recorded since the last (`Outbox.collect`),
takes what is due (`Outbox.webhooks_due`: oldest first, one per invoice, leased),
posts the webhooks in parallel, signed (`signing.py`), and records
every attempt. A 2xx is delivered; a 410 Gone stops the endpoint (nothing more is sent
to it until `dunning webhooks resume`); anything else — another status, a timeout, a
dropped connection, a redirect — is retried with jittered exponential backoff
(`worker.backoff.WEBHOOK`) until three days after the event, then given up. Several
workers may run this loop on one database: the lease makes each attempt one
dispatcher's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import urllib3

from worker.backoff import WEBHOOK, WEBHOOK_FOR, Backoff
from worker.clock import Clock
from worker.contact_log.kinds import WebhookStatus
from worker.metrics import WEBHOOK_ATTEMPTS
from worker.supervisor import brief
from worker.webhooks.outbox import Attempt, Outbox, Pending, endpoint_host
from worker.webhooks.payload import body
from worker.webhooks.signing import signed_headers

logger = logging.getLogger("dunning.webhooks")

BATCH = 256  # per round: each round takes the log's write lock three times, so fewer rounds
PARALLEL = 8  # requests in flight at once
IDLE = 1.0  # seconds between looks at an outbox with nothing due
STOPPED_IDLE = 30.0  # seconds between looks while the endpoint is stopped
LEASE = timedelta(minutes=30)  # longer than the slowest round (256 / 8 waves × 20 s timeouts): then another may try
KEEP_FINISHED = timedelta(days=7)  # finished outbox rows; their attempts stay in the log
TIMEOUT = urllib3.Timeout(connect=5.0, read=15.0)


@dataclass(frozen=True)
class Endpoint:
    url: str
    key: bytes  # from `settings.parse_webhook_secret`


class Dispatcher:
    """`clock` says what is due; `wall` (seconds since the epoch, from the entry point)
    stamps the signature, which receivers check against their own clock."""

    def __init__(self, outbox: Outbox, endpoint: Endpoint, clock: Clock, wall: Callable[[], float],
                 client: urllib3.PoolManager | None = None, rng: random.Random | None = None,
                 backoff: Backoff = WEBHOOK, give_up_after: timedelta = WEBHOOK_FOR, batch: int = BATCH) -> None:
        self.outbox, self.endpoint, self.clock, self.wall = outbox, endpoint, clock, wall
        # urllib3 rather than httpx: half the CPU per request, and this shares the cores with the senders.
        self.client = client or urllib3.PoolManager(maxsize=PARALLEL, block=True, timeout=TIMEOUT, retries=False,
                                                    headers={"user-agent": "dunning-webhooks/1"})
        self.rng = rng or random.Random()
        self.backoff, self.give_up_after, self.batch = backoff, give_up_after, batch
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="dunning-webhook")
        self.host = endpoint_host(endpoint.url)
        self._purged: datetime | None = None

    def step(self) -> float:
        """One round; returns how long to wait before the next (0: more is due now)."""
        now = self.clock.now()
        self.outbox.collect(self.endpoint.url, now)
        if self.outbox.endpoint_stopped(self.endpoint.url) is not None:
            if dropped := self.outbox.drop_pending():
                logger.warning("webhooks: %d dropped: %s answered 410 Gone (`dunning webhooks resume` sends "
                               "to it again)", dropped, self.host)
            return STOPPED_IDLE
        self._purge(now)
        due = self.outbox.webhooks_due(now, self.batch, LEASE)
        if not due:
            return IDLE
        answers = list(self.pool.map(self.post, due))
        judged = [self.judge(hook, code, error, self.clock.now()) for hook, (code, error) in zip(due, answers,
                                                                                                 strict=True)]
        self.outbox.record_attempts(judged, self.clock.now(), self.endpoint.url)
        for attempt in judged:
            WEBHOOK_ATTEMPTS.labels(self.host, attempt.result.value).inc()
            if attempt.result != WebhookStatus.DELIVERED:
                logger.warning("webhook %s (%s) to %s: %s, %s", attempt.webhook.message_id, attempt.webhook.type,
                               self.host, attempt.status_code or attempt.error, attempt.result)
        return 0.0 if len(due) == self.batch else IDLE

    def post(self, hook: Pending) -> tuple[int | None, str | None]:
        """Send one webhook: its HTTP status, or why there was none."""
        content = body(hook)
        moment = datetime.fromtimestamp(self.wall(), UTC)
        try:
            response = self.client.request("POST", self.endpoint.url, body=content, redirect=False,
                                           headers=signed_headers(self.endpoint.key, hook.message_id, moment, content))
        except urllib3.exceptions.TimeoutError:
            return None, "timeout"
        except urllib3.exceptions.HTTPError as error:  # refused, reset, dropped mid-answer, a bad TLS certificate...
            return None, brief(error)
        return response.status, None

    def judge(self, hook: Pending, code: int | None, error: str | None, now: datetime) -> Attempt:
        if code is not None and 200 <= code < 300:
            return Attempt(hook, WebhookStatus.DELIVERED, code, None)
        if code == 410:
            return Attempt(hook, WebhookStatus.STOPPED, code, "410 Gone: the endpoint is stopped")
        retry_at = now + self.backoff.jittered(hook.attempts + 1, self.rng)
        if retry_at > hook.created_at + self.give_up_after:
            return Attempt(hook, WebhookStatus.FAILED, code, error or f"HTTP {code}; retries exhausted")
        return Attempt(hook, WebhookStatus.RETRY, code, error or f"HTTP {code}", retry_at)

    def _purge(self, now: datetime) -> None:
        if self._purged is None or now - self._purged > timedelta(hours=1):
            self.outbox.purge_webhooks(now - KEEP_FINISHED)
            self._purged = now

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.clear()
