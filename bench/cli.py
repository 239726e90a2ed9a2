"""How long a person waits for the CLI's quickest answers, against the floor of starting
Python at all, in the same run.

    .venv/bin/python bench/cli.py [--runs 7]

Times `dunning --help` and `dunning validate` of the bundled portfolio (12 jobs) as
processes, best of `--runs` each, beside `python -c pass` (the interpreter's own start)
and `python -c "import typer"` (the CLI library's). Goal: both under 0.5 s on this
machine; the figures and the ratio to the floor are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUNNING = str(Path(sys.executable).parent / "dunning")
PORTFOLIO = str(ROOT / "worker" / "jobs" / "samples" / "portfolio.jsonl")


def best(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False, timeout=60)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    floor = best([sys.executable, "-c", "pass"], runs)
    typer = best([sys.executable, "-c", "import typer"], runs)
    print(f"python -c pass           {floor * 1000:7.0f} ms  (the floor)")
    print(f"python -c 'import typer' {typer * 1000:7.0f} ms  {typer / floor:5.1f}x the floor")
    for name, command in (("dunning --help", [DUNNING, "--help"]),
                          ("dunning validate (12 jobs)", [DUNNING, "validate", PORTFOLIO])):
        took = best(command, runs)
        print(f"{name:24} {took * 1000:7.0f} ms  {took / floor:5.1f}x the floor  "
              f"({'under' if took < 0.5 else 'OVER'} the 0.5 s goal)")


if __name__ == "__main__":
    main()
