"""The application's door to the policy: profiles from a folder, `decide` by job.

`schedules.decide` takes the resolved profile explicitly; here the job's `profile`
name is looked up among the profiles given. Which folder holds the operator's
profiles is a setting (`DUNNING_PROFILE_DIR`, `settings.profile_dir`), read by the entry
points and handed in: nothing here reads the environment.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from schedules import Decision, Facts, Profiles
from schedules import decide as decide_with
from schedules.facts import NOTHING_KNOWN
from schedules.subject import Reminder


class Profiled(Reminder, Protocol):
    """A reminder that names its profile (`worker.jobs.contract.Job` is one): all the
    policy's door needs, so the policy sits below the jobs."""

    @property
    def profile(self) -> str: ...


def profiles(profile_dir: Path | None) -> Profiles:
    """The shipped profiles and the operator's in `profile_dir` (`settings.profile_dir`;
    None: the shipped ones alone), read once per folder and process; ProfileError if any
    file is wrong."""
    return _loaded(profile_dir)


_loaded = lru_cache(maxsize=4)(Profiles.load)  # apart: lru_cache's wrapper hides the signature from mypy


def decide(job: Profiled, now: datetime, known: Profiles, facts: Facts = NOTHING_KNOWN) -> Decision:
    """Whether, when and how to contact the debtor of `job` at `now`, and why."""
    return decide_with(job, now, facts, known[job.profile])
