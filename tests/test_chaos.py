"""The chaos suite's short version (`bench/chaos.py`): every scenario — Redis SIGTERM
and SIGKILL restarts with AOF, PostgreSQL fast and immediate restarts, SMTP down,
451, 421 and frozen, enqueue with Redis down or hung, a batch with NUL bytes and lone
surrogates, SIGKILL of the worker's processes and of `dunning worker` itself, SIGTERM to
`dunning worker` (a rolling restart's stop) — with a hundred reminders each, counted one
by one at the SMTP server and in the log.

0 lost; no duplicate the log does not record as a second attempt; no contact the log
does not show; the log's chain intact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import chaos  # noqa: E402

JOBS = 100


@pytest.mark.chaos
def test_every_fault_loses_nothing_and_sends_nothing_twice_unrecorded() -> None:
    lines: list[str] = []
    results = chaos.run(list(chaos.SCENARIOS), JOBS, out=lines.append)
    report = "\n".join(lines)
    print(report)
    assert len(results) == len(chaos.SCENARIOS)
    for result in results:
        assert not result.lost, f"{result.scenario}: lost\n{report}"
        assert result.duplicated == result.recorded, f"{result.scenario}: a duplicate the log does not show\n{report}"
        assert not result.unrecorded, f"{result.scenario}: a contact the log does not show\n{report}"
        assert result.verify == "intact", f"{result.scenario}: {result.verify}\n{report}"
        assert not any("error" in note or "orphan" in note or "traceback" in note for note in result.notes), \
            f"{result.scenario}: {result.notes}\n{report}"
        assert result.exactly_once + result.duplicated == result.jobs
    (graceful,) = (result for result in results if result.scenario == "sigterm-worker")
    assert graceful.duplicated == 0, f"a graceful stop sent something twice\n{report}"
