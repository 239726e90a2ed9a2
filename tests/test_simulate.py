"""`dunning simulate` on the bundled samples, 60 days, with random payments: the output is
scanned for any message a debtor should never have received.

The portfolio holds business debtors, held to the etiquette of DOMAIN.md; the US
consumer samples are held to the legal window, every day (the consumer profiles carry
no business etiquette), and to their own caps.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays

SAMPLES = Path(__file__).parent.parent / "worker" / "jobs" / "samples"
DUNNING = str(Path(sys.executable).parent / "dunning")
BUSINESS_HOURS = ((time(9, 0), time(11, 30)), (time(13, 30), time(17, 30)))


def simulate(jobs: Path, report: Path, pay_rate: str, seed: str) -> tuple[str, dict[str, Any], list[dict[str, str]]]:
    """Run `dunning simulate` for 60 days from Monday 16 November 2026: its table, the
    jobs by invoice, and the CSV rows."""
    result = subprocess.run([DUNNING, "simulate", str(jobs), "--start", "2026-11-16", "--days", "60",
                             "--pay-rate", pay_rate, "--seed", seed, "--csv", str(report)],
                            capture_output=True, text=True, timeout=300,
                            env={"PATH": os.environ["PATH"], "COLUMNS": "200",
                                 "DUNNING_SMTP_URL": "smtp://smtp.example.invalid:25",  # must not be used
                                 "DUNNING_TWILIO_BASE_URL": "https://api.twilio.example.invalid"})
    assert result.returncode == 0, result.stdout + result.stderr
    debtors = {job["invoice"]["id"]: job for job in map(json.loads, jobs.read_text().splitlines())}
    return result.stdout, debtors, list(csv.DictReader(report.open(encoding="utf-8")))


def sent_before_payment(rows: list[dict[str, str]], debtors: dict[str, Any]) -> list[tuple[dict[str, str], datetime]]:
    """Every message sent, with its debtor-local time; none may follow the invoice's payment."""
    paid = {r["invoice"]: datetime.fromisoformat(r["utc"]) for r in rows if r["action"] == "paid"}
    sent = []
    for row in (r for r in rows if r["action"] == "sent"):
        utc = datetime.fromisoformat(row["utc"])
        at = utc.astimezone(ZoneInfo(debtors[row["invoice"]]["debtor"]["timezone"]))
        assert row["invoice"] not in paid or utc < paid[row["invoice"]], f"after payment: {where(row, at)}"
        sent.append((row, at))
    return sent


def where(row: dict[str, str], at: datetime) -> str:
    return f"{row['invoice']} {row['channel']} at {at:%a %Y-%m-%d %H:%M %Z}"


def _month_end(day: date) -> bool:
    return (day + timedelta(days=2)).month != day.month


def test_sixty_days_of_the_portfolio_break_no_window_and_send_nothing_after_payment(tmp_path: Path) -> None:
    table, debtors, rows = simulate(SAMPLES / "portfolio.jsonl", tmp_path / "portfolio.csv", "0.04", "11")
    sent = sent_before_payment(rows, debtors)
    assert len(sent) >= 30 and any(r["action"] == "paid" for r in rows), "a run worth scanning"
    assert any(r["action"] == "escalated" for r in rows)
    assert "sent" in table and "paid" in table
    for row, at in sent:
        debtor = debtors[row["invoice"]]["debtor"]
        assert at.weekday() < 5, f"weekend: {where(row, at)}"
        assert at.date() not in holidays.country_holidays(debtor["country"], subdiv=debtor.get("subdivision")), \
            f"public holiday: {where(row, at)}"
        assert not _month_end(at.date()), f"last two days of the month: {where(row, at)}"
        assert any(start <= at.time() < end for start, end in BUSINESS_HOURS), \
            f"outside working hours: {where(row, at)}"


def test_sixty_days_of_the_us_consumer_samples_keep_the_legal_window_and_their_caps(tmp_path: Path) -> None:
    _, debtors, rows = simulate(SAMPLES / "us-consumers.jsonl", tmp_path / "consumers.csv", "0.03", "4")
    sent = sent_before_payment(rows, debtors)
    assert {r["action"] for r in rows} >= {"sent", "paid", "escalated"}, "a run worth scanning"
    assert any(at.weekday() >= 5 for _, at in sent), "consumers may be reached on weekends (no business etiquette)"
    for row, at in sent:
        assert time(8, 0) <= at.time() < time(21, 0), f"outside 08:00-21:00: {where(row, at)}"
    phone = sorted(at for row, at in sent if row["profile"] == "us-ma" and row["channel"] in ("voice", "sms"))
    assert len(phone) >= 3, "enough phone contacts to test the Massachusetts cap"
    for first, third in zip(phone, phone[2:], strict=False):
        assert third - first >= timedelta(days=7), f"3 phone contacts within 7 days in Massachusetts: {first}, {third}"
