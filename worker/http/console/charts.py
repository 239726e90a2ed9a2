"""Charts drawn on the server as SVG (no script, nothing from elsewhere): stacked bars
of sends per day by channel, for the Schedule and Simulate pages (`_chart.html`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from schedules.spec import CHANNELS

WIDTH, HEIGHT, BAR, TOP = 700, 220, 28, 20


@dataclass(frozen=True)
class Bar:
    channel: str
    x: int
    y: float
    height: float
    count: int


def sends_per_day(per_day: Mapping[date, Counter[str]]) -> dict[str, Any]:
    """Coordinates for one stacked bar per day, one colour per channel."""
    tallest = max([sum(c.values()) for c in per_day.values()] + [1])
    step = WIDTH // max(len(per_day), 1)
    width = min(BAR, max(step - 4, 2))
    bars, labels = [], []
    for index, (day, counts) in enumerate(sorted(per_day.items())):
        x, base = index * step + (step - width) // 2, float(HEIGHT)
        for channel in CHANNELS:
            if counts[channel]:
                height = counts[channel] / tallest * (HEIGHT - TOP)
                base -= height
                bars.append(Bar(channel, x, round(base, 1), round(height, 1), counts[channel]))
        labels.append({"x": x + width // 2, "text": day.strftime("%d %b"), "total": sum(counts.values()),
                       "day": day.isoformat(), "shown": len(per_day) <= 16 or index % max(len(per_day) // 12, 1) == 0})
    return {"bars": bars, "labels": labels, "tallest": tallest, "width": WIDTH, "height": HEIGHT, "bar": width}
