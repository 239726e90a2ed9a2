"""How long `dunning simulate` takes for the bundled portfolio over 60 days (goal: < 30 s).

Run: .venv/bin/python bench/simulate.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

PORTFOLIO = Path(__file__).parent.parent / "worker" / "jobs" / "samples" / "portfolio.jsonl"
DUNNING = str(Path(sys.executable).parent / "dunning")


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "simulation.csv"
        started = time.perf_counter()
        subprocess.run([DUNNING, "simulate", str(PORTFOLIO), "--start", "2026-11-16", "--days", "60",
                        "--pay-rate", "0.04", "--seed", "11", "--csv", str(report)],
                       check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
        rows = max(len(report.read_text(encoding="utf-8").splitlines()) - 1, 0)
    invoices = len(PORTFOLIO.read_text(encoding="utf-8").splitlines())
    print(f"simulate: {invoices} invoices, 60 days, {rows} rows in {elapsed:.1f} s "
          f"(goal < 30 s, including starting redis-server, the SMTP sink and the Twilio sandbox)")


if __name__ == "__main__":
    main()
