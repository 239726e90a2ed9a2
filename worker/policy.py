"""The application's door to the policy: profiles from configuration, `decide` by job.

`schedules.decide` takes the resolved profile explicitly; here the job's `profile`
name is looked up among the shipped profiles and the operator's
(`DUNNING_PROFILE_DIR`), loaded once per process.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Protocol

from schedules import Decision, Facts, Profiles
from schedules import decide as decide_with
from schedules.facts import NOTHING_KNOWN
from schedules.subject import Reminder
from worker.settings import Settings


class Profiled(Reminder, Protocol):
    """A reminder that names its profile (`worker.jobs.contract.Job` is one): all the
    policy's door needs, so the policy sits below the jobs."""

    @property
    def profile(self) -> str: ...


@lru_cache(maxsize=1)
def profiles() -> Profiles:
    """The profiles this process decides with; ProfileError if any file is wrong."""
    return Profiles.load(Settings.from_env().profile_dir)


def decide(job: Profiled, now: datetime, facts: Facts = NOTHING_KNOWN) -> Decision:
    """Whether, when and how to contact the debtor of `job` at `now`, and why."""
    return decide_with(job, now, facts, profiles()[job.profile])
