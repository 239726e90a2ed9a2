"""The console's timeline of a debtor with a long record, against a floor in the same run.

    .venv/bin/python bench/console.py [--events 10000] [--requests 20]

Records `--events` events for one invoice (a decision and a delivery with its statuses,
over and over) in a SQLite contact log, starts `dunning serve` (uvicorn, one process),
signs in as a compliance user, and times the invoice's timeline page — the newest 200
events, and the oldest page reached through "Older events" — and the account's
timeline filtered to one kind; the floor is the console's stylesheet from the same
server (a request that touches no database). Prints the median of `--requests` for
each. Goal: every timeline page well under a second (< 250 ms) for 10,000 events.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.contact_log import Claim, ContactLog  # noqa: E402
from worker.contact_log.kinds import Event, Kind  # noqa: E402
from worker.local.ports import free_port  # noqa: E402
from worker.users.people import People  # noqa: E402

MASTER_KEY = os.urandom(32)  # this run's own

DUNNING = str(Path(sys.executable).parent / "dunning")
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
PASSWORD = "bench password, long enough"


def fill(log: ContactLog, count: int) -> None:
    made, n = 0, 0
    while made < count:
        moment = NOW + timedelta(minutes=n)
        decision = {"action": "send", "channel": "sms", "reasons": ["stage overdue: sms"], "rules": ["W-BIZ"],
                    "zones": ["Asia/Shanghai"]}
        claim = Claim(f"INV-B/s{n}#sms", f"INV-B/s{n}", "INV-B", "ACME-B", "sms", "+8613800138000", "overdue",
                      None, None, ("stage overdue: sms",), ("W-BIZ",), ("Asia/Shanghai",))
        delivery = log.claim(claim, moment, decision=decision)
        assert delivery is not None
        for status in ("sent", "delivered"):
            log.record(Event(Kind.DELIVERY, status, delivery_id=delivery.id, provider="twilio"), moment)
        made, n = made + 4, n + 1


def timed(http: requests.Session, url: str, rounds: int) -> tuple[float, str]:
    times, text = [], ""
    for _ in range(rounds):
        began = time.perf_counter()
        answer = http.get(url, timeout=30)
        times.append(time.perf_counter() - began)
        assert answer.status_code == 200, (url, answer.status_code)
        text = answer.text
    return statistics.median(times), text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="dunning-bench-console-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DUNNING_DATABASE_URL": f"sqlite:///{directory / 'dunning.db'}",
           "DUNNING_SECRET_KEY": "bench-" + "k" * 40, "DUNNING_PUBLIC_URL": url,
           "DUNNING_MASTER_KEY": base64.b64encode(MASTER_KEY).decode()}
    log = ContactLog.open(env["DUNNING_DATABASE_URL"], MASTER_KEY).migrate()
    began = time.perf_counter()
    fill(log, args.events)
    print(f"recorded {args.events:,} events for one invoice in {time.perf_counter() - began:.1f} s")
    People(log).add_user("bench", "compliance", PASSWORD, NOW, by="bench")
    server = subprocess.Popen([DUNNING, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        http = requests.Session()
        deadline = time.monotonic() + 30
        while True:
            try:
                form = http.get(f"{url}/console/sign-in", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        http.post(f"{url}/console/sign-in", data={"username": "bench", "password": PASSWORD, "csrf": token.group(1)},
                  timeout=10)
        floor, _ = timed(http, f"{url}/console/static/console.css", args.requests)
        newest, page = timed(http, f"{url}/console/invoices/INV-B", args.requests)
        before = None
        while (older := re.search(r'<a href="[^"]*before=(\d+)[^"]*">Older events</a>', page)) is not None:
            before = older.group(1)
            page = http.get(f"{url}/console/invoices/INV-B", params={"before": before}, timeout=30).text
        oldest, _ = timed(http, f"{url}/console/invoices/INV-B?before={before}", args.requests)
        filtered, _ = timed(http, f"{url}/console/accounts/ACME-B?kind=decision", args.requests)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"floor (the stylesheet):            {floor * 1000:6.1f} ms")
    for name, seconds in (("newest 200 events", newest), ("oldest page", oldest),
                          ("account, decisions only", filtered)):
        print(f"timeline, {name:25s} {seconds * 1000:6.1f} ms  ({seconds / floor:.0f}x the floor)")
    worst = max(newest, oldest, filtered)
    print(f"goal: every page < 250 ms for {args.events:,} events: {'met' if worst < 0.25 else 'NOT met'}")


if __name__ == "__main__":
    main()
