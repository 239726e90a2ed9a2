"""`dunning simulate` on the bundled portfolio, 60 days, with random payments: the output
is scanned for any message a debtor should never have received."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

PORTFOLIO = Path(__file__).parent.parent / "worker" / "samples" / "portfolio.jsonl"
DUNNING = str(Path(sys.executable).parent / "dunning")
BUSINESS_HOURS = ((time(9, 0), time(11, 30)), (time(13, 30), time(17, 30)))
CONSUMER_PROFILES = {"us-consumer-3p", "us-ma"}  # the legal window, every day (COMPLIANCE.md W-LEGAL)


def _month_end(day: date) -> bool:
    return (day + timedelta(days=2)).month != day.month


def test_sixty_days_of_the_portfolio_break_no_window_and_send_nothing_after_payment(tmp_path: Path) -> None:
    report = tmp_path / "simulation.csv"
    result = subprocess.run([DUNNING, "simulate", str(PORTFOLIO), "--start", "2026-11-16", "--days", "60",
                             "--pay-rate", "0.04", "--seed", "11", "--csv", str(report)],
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": os.environ["PATH"], "COLUMNS": "200",
                                 "DUNNING_SMTP_URL": "smtp://smtp.example.invalid:25",  # must not be used
                                 "DUNNING_TWILIO_BASE_URL": "https://api.twilio.example.invalid"})
    assert result.returncode == 0, result.stdout + result.stderr
    debtors = {job["invoice"]["id"]: job for job in map(json.loads, PORTFOLIO.read_text().splitlines())}
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    sent = [r for r in rows if r["action"] == "sent"]
    paid = {r["invoice"]: datetime.fromisoformat(r["utc"]) for r in rows if r["action"] == "paid"}
    assert len(sent) >= 40 and paid and any(r["action"] == "escalated" for r in rows), "a run worth scanning"
    assert "sent" in result.stdout and "paid" in result.stdout
    for row in sent:
        job = debtors[row["invoice"]]
        at = datetime.fromisoformat(row["utc"]).astimezone(ZoneInfo(job["debtor"]["timezone"]))
        where = f"{row['invoice']} {row['channel']} at {at:%a %Y-%m-%d %H:%M %Z}"
        if row["invoice"] in paid:
            assert datetime.fromisoformat(row["utc"]) < paid[row["invoice"]], f"after payment: {where}"
        if row["profile"] in CONSUMER_PROFILES:
            assert time(8, 0) <= at.time() < time(21, 0), f"outside 08:00-21:00: {where}"
            continue
        assert at.weekday() < 5, f"weekend: {where}"
        assert at.date() not in holidays.country_holidays(job["debtor"]["country"]), f"public holiday: {where}"
        assert not _month_end(at.date()), f"last two days of the month: {where}"
        assert any(start <= at.time() < end for start, end in BUSINESS_HOURS), f"outside working hours: {where}"
