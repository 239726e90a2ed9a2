"""How many SMS segments a text costs: GSM-7 160/153, otherwise UCS-2 70/67.

One character outside the GSM 03.38 alphabet turns the whole message into UCS-2
(all Chinese text is). Extension characters (€, [, ], {, }, ...) take two septets,
and a segment never splits one of them, nor a UTF-16 surrogate pair.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PART = {"GSM-7": 153, "UCS-2": 67}


class Segments(NamedTuple):
    encoding: Literal["GSM-7", "UCS-2"]
    parts: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)


def count_segments(text: str) -> Segments:
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        sizes = [2 if c in _GSM_EXTENDED else 1 for c in text]
        encoding: Literal["GSM-7", "UCS-2"] = "GSM-7"
    else:
        sizes = [2 if ord(c) > 0xFFFF else 1 for c in text]
        encoding = "UCS-2"
    units = sum(sizes)
    if units <= SINGLE[encoding]:
        return Segments(encoding, 1 if units else 0, units)
    count, used = 1, 0
    for size in sizes:
        if used + size > PART[encoding]:
            count, used = count + 1, 0
        used += size
    return Segments(encoding, count, units)
