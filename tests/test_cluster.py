"""Several hosts for real (`bench/cluster.py`, short): worker hosts and an API host as
network namespaces, PostgreSQL and Redis on the machine. While reminders go in over
the API, one worker host's link is cut for 20 s and another worker host loses every
process. Nothing is lost, nothing is sent twice unless the log records both sends,
every chain verifies, and the log extends the last signed checkpoint."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import cluster  # noqa: E402

from worker.local.hosts import available  # noqa: E402

JOBS = 600


@pytest.mark.chaos
@pytest.mark.skipif(available() is not None, reason=f"no hosts here: {available()}")
def test_a_cut_link_and_a_lost_host_lose_nothing_and_break_no_chain() -> None:
    made = cluster.Cluster(Path(tempfile.mkdtemp(prefix="dunning-test-cluster-")))
    try:
        result, extends = cluster.faults(made, JOBS, 20.0)
    finally:
        made.close()
    assert not result.lost, result.lost[:5]
    assert result.duplicated == result.recorded, "a second send the log does not show"
    assert not result.unrecorded
    assert result.exactly_once + result.duplicated == JOBS
    assert result.verify == "intact" and extends == []
