"""SMS segment arithmetic, as carriers bill it."""

from __future__ import annotations

import pytest

from channels.segments import count_segments


@pytest.mark.parametrize(("text", "encoding", "count"), [
    ("", "GSM-7", 0),
    ("a" * 160, "GSM-7", 1), ("a" * 161, "GSM-7", 2), ("a" * 306, "GSM-7", 2), ("a" * 307, "GSM-7", 3),
    ("€" * 80, "GSM-7", 1), ("€" * 81, "GSM-7", 2),  # two septets each
    ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),  # 164 septets, the escape fits part 1 exactly
    ("a" * 153 + "€", "GSM-7", 1),  # 155 septets: one segment
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # 306 septets, but the escape may not straddle parts 1 and 2
    ("您好" * 35, "UCS-2", 1), ("您好" * 35 + "。", "UCS-2", 2), ("字" * 134, "UCS-2", 2), ("字" * 135, "UCS-2", 3),
    ("a" * 159 + "ç", "UCS-2", 3),  # one non-GSM character makes all of it UCS-2
])
def test_segments(text: str, encoding: str, count: int) -> None:
    result = count_segments(text)
    assert (result.encoding, result.parts) == (encoding, count)


def test_a_surrogate_pair_is_never_split() -> None:
    # 66 units then an emoji (2 units): it cannot start in unit 67 of part 1.
    result = count_segments("字" * 66 + "😀" + "字" * 60)
    assert result.units == 128 and result.parts == 2
    assert count_segments("字" * 66 + "😀" + "字" * 66).parts == 3
