"""The application's door to the policy: profiles from configuration, `decide` by job.

`schedules.decide` takes the resolved profile explicitly; here the job's `profile`
name is looked up among the shipped profiles and the operator's
(`DUNNING_PROFILE_DIR`), loaded once per process.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from schedules import Decision, Facts, Profiles
from schedules import decide as decide_with
from schedules.facts import NOTHING_KNOWN
from worker.jobs.contract import Job
from worker.settings import Settings


@lru_cache(maxsize=1)
def profiles() -> Profiles:
    """The profiles this process decides with; ProfileError if any file is wrong."""
    return Profiles.load(Settings.from_env().profile_dir)


def decide(job: Job, now: datetime, facts: Facts = NOTHING_KNOWN) -> Decision:
    """Whether, when and how to contact the debtor of `job` at `now`, and why."""
    return decide_with(job, now, facts, profiles()[job.profile])
