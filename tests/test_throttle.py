"""The per-sender bucket in real Redis: slots reserved in order, costs in segments, a
short code's burst, and senders kept apart."""

from __future__ import annotations

from typing import Any

import pytest

from channels.base import Rate
from channels.sms import default_rate
from worker.queue.throttle import Throttle


def test_a_long_code_reserves_one_segment_per_second_in_order(redis_client: Any) -> None:
    throttle = Throttle(redis_client)
    long_code = Rate("sms:+15005550006", 1.0)
    waits = [throttle.reserve(long_code, 2) for _ in range(5)]
    assert waits[0] == 0
    for k, wait in enumerate(waits[1:], start=1):
        assert 2 * k - 0.5 <= wait <= 2 * k, waits  # each two-segment text holds two seconds


def test_a_short_code_sends_a_second_worth_at_once_then_waits(redis_client: Any) -> None:
    throttle = Throttle(redis_client)
    short_code = Rate("sms:89000", default_rate("89000"))
    assert short_code.per_second == 100
    assert all(throttle.reserve(short_code, 1) == 0 for _ in range(100)), "a second's worth goes at once"
    throttle.reserve(short_code, 300)  # three seconds of the code, booked
    assert throttle.reserve(short_code, 1) > 2.5, "the next segment waits for them"


def test_senders_do_not_share_a_bucket(redis_client: Any) -> None:
    throttle = Throttle(redis_client)
    throttle.reserve(Rate("calls:AC1", 1.0), 1)
    assert throttle.reserve(Rate("calls:AC2", 1.0), 1) == 0
    assert throttle.reserve(Rate("calls:AC1", 1.0), 1) > 0.5


@pytest.mark.parametrize("number, rate", [("+15005550006", 1.0), ("MG123", 1.0), ("12345", 100.0)])
def test_the_default_rate_follows_the_kind_of_sender(number: str, rate: float) -> None:
    assert default_rate(number) == rate
