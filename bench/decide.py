"""Decisions per second on a mixed portfolio, on one core.

    .venv/bin/python bench/decide.py [--jobs 10000] [--rounds 5]

Builds a portfolio of valid jobs across profiles, zones, stages, consents and facts
(some with past attempts, some paid, promised or suppressed), then times `decide`
over it at moments spread across a working week. Also times a floor in the same run
— per job, only the unavoidable work of reading the job and converting `now` to the
debtor's zone — so the ratio can be compared across noisy machines. Goal: ≥ 20,000
decisions/s (≤ 50 µs each).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from schedules import Facts, decide  # noqa: E402
from schedules.facts import Attempt  # noqa: E402
from worker.jobs.contract import Job  # noqa: E402
from worker.policy import profiles  # noqa: E402

DEBTORS = [
    ("default", "Asia/Shanghai", "+8613800138000", "CN", "zh-CN", "CNY"),
    ("cn-commercial", "Asia/Shanghai", "+8613900139000", "CN", "zh-CN", "CNY"),
    ("cn-fi-consumer", None, "+8613700137000", "CN", "zh-CN", "CNY"),
    ("us-b2b", "America/New_York", "+12125550143", "US", "en-US", "USD"),
    ("us-b2b", "America/Los_Angeles", "+14155550100", "US", "en-US", "USD"),
    ("us-consumer-3p", "America/Chicago", "+13125550187", "US", "en-US", "USD"),
    ("us-consumer-1p", "America/Los_Angeles", "+12125550143", "US", "en-US", "USD"),
    ("us-ma", "America/New_York", "+16175550123", "US", "en-US", "USD"),
    ("eu", "Europe/Berlin", "+4915123456789", "DE", "de-DE", "EUR"),
    ("uk-conc", "Europe/London", "+447911123456", "GB", "en-GB", "GBP"),
    ("default", "Asia/Kolkata", "+919876543210", "IN", "en-IN", "INR"),
]


def portfolio(size: int, rng: random.Random, start: datetime) -> list[tuple[Job, Facts]]:
    loaded = profiles(None)
    jobs = []
    for n in range(size):
        profile, zone, phone, country, locale, currency = rng.choice(DEBTORS)
        due = (start + timedelta(days=rng.randint(-18, 12))).date()
        data = {
            "job_id": f"INV-{n}/reminder",
            "invoice": {"id": f"INV-{n}", "number": str(n), "amount_due": f"{rng.randint(1, 99999)}.00",
                        "currency": currency, "due_date": str(due)},
            "debtor": {"account_id": f"A-{n % 3000}", "name": "Debtor", "email": f"d{n}@example.com",
                       "phone": phone, "locale": locale, "country": country,
                       "consent": {"email": True, "sms": rng.random() < 0.7, "voice": rng.random() < 0.5},
                       "kind": "person" if "consumer" in profile or profile == "us-ma" else "business"},
            "profile": profile,
        }
        if zone:
            data["debtor"]["timezone"] = zone
        job = Job.model_validate(data, context={"profiles": loaded})
        roll = rng.random()
        attempts = tuple(
            Attempt(invoice_id=job.invoice.id, channel=rng.choice(["voice", "sms", "email"]), stage="overdue_early",
                    at=start - timedelta(hours=rng.randint(1, 200)), outcome=rng.choice(["no-answer", "delivered"]))
            for _ in range(rng.randint(0, 4)))
        facts = Facts(paid=roll < 0.05, promised_until=due + timedelta(days=3) if 0.05 <= roll < 0.1 else None,
                      suppressed_channels=frozenset({"sms"}) if 0.1 <= roll < 0.15 else frozenset(),
                      attempts=attempts if roll > 0.5 else ())
        jobs.append((job, facts))
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(20261201)
    start = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # Tuesday morning in Asia, Monday evening in America
    jobs = portfolio(args.jobs, rng, start)
    loaded = profiles(None)
    moments = [start + timedelta(hours=h) for h in range(0, 120, 7)]
    pairs = [(job, facts, loaded[job.profile], moments[i % len(moments)]) for i, (job, facts) in enumerate(jobs)]

    actions = Counter(decide(job, now, facts, profile).action for job, facts, profile, now in pairs)  # warm caches

    def ours() -> None:
        for job, facts, profile, now in pairs:
            decide(job, now, facts, profile)

    zones = {key: ZoneInfo(key) for key in {d[1] or "UTC" for d in DEBTORS}}

    def floor() -> None:
        for job, _facts, _profile, now in pairs:
            debtor = job.debtor
            local = now.astimezone(zones[debtor.timezone or "UTC"])
            _ = (local.date() - job.invoice.due_date).days

    def timed(work) -> float:
        runs = []
        for _ in range(args.rounds):
            began = time.perf_counter()
            work()
            runs.append(time.perf_counter() - began)
        return statistics.median(runs)

    ours_s, floor_s = timed(ours), timed(floor)
    per_decision = ours_s / len(pairs) * 1e6
    print(f"portfolio: {len(pairs)} jobs, {len({j.profile for j, *_ in pairs})} profiles, "
          f"{len({j.debtor.timezone for j, *_ in pairs})} stated zones; actions {dict(actions)}")
    print(f"decide: {len(pairs) / ours_s:,.0f} decisions/s ({per_decision:.1f} µs each, median of {args.rounds})")
    print(f"floor (read job, convert now to its zone): {len(pairs) / floor_s:,.0f} jobs/s "
          f"({floor_s / len(pairs) * 1e6:.1f} µs each)")
    print(f"ratio decide/floor cost: {ours_s / floor_s:.1f}x")
    print(f"goal >= 20,000 decisions/s: {'met' if per_decision <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
