"""Shared helpers: the DESIGN.md sample job, built up with overrides, and the profiles."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schedules import Facts, Profiles
from worker.job import Job
from worker.policy import profiles as loaded_profiles

SAMPLE: dict[str, Any] = {
    "job_id": "INV-2026-0042/due_day",
    "invoice": {"id": "INV-2026-0042", "number": "2026-0042", "amount_due": "12800.00", "currency": "CNY",
                "due_date": "2026-12-01", "issued_date": "2026-11-01",
                "payment_url": "https://pay.example.com/i/INV-2026-0042"},
    "debtor": {"account_id": "ACME-001", "name": "张伟", "company": "上海某某贸易有限公司",
               "email": "zhang.wei@example.com", "phone": "+8613800138000", "locale": "zh-CN",
               "timezone": "Asia/Shanghai", "country": "CN", "preferred_channel": "email",
               "consent": {"email": True, "sms": True, "voice": False}},
    "stage": None,
    "profile": "default",
}


def job_data(**changes: Any) -> dict[str, Any]:
    """The sample job with changes: `debtor__phone="..."` sets a nested field; None deletes it.

    A changed due date drops the sample's issue date unless one is given too.
    """
    data = copy.deepcopy(SAMPLE)
    if "invoice__due_date" in changes:
        changes.setdefault("invoice__issued_date", None)
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        target = data
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return data


def make_job(**changes: Any) -> Job:
    return Job.model_validate(job_data(**changes), context={"profiles": loaded_profiles()})


def at(text: str, zone: str | None = None) -> datetime:
    """An aware datetime: ISO with offset, or local wall time in `zone`."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=ZoneInfo(zone)) if zone else moment


def facts(**values: Any) -> Facts:
    import json

    return Facts.model_validate_json(json.dumps(values))


@pytest.fixture(scope="session")
def profiles() -> Profiles:
    return loaded_profiles()
