"""For `bench/throughput.py --metrics` only: every metric a no-op, so a run that counts
nothing can be timed against one that counts (issue 26: metrics cost within 3%).

Python imports `sitecustomize` at start-up from the path, so a `dunning worker` started
with this folder on PYTHONPATH — and its dramatiq processes — count nothing: a metric's
`labels()` hands back a child that ignores what it is told, and an unlabelled one
ignores it too. Nothing in the product can switch its metrics off; this file is not part
of the package.
"""

from __future__ import annotations

from typing import Any


class _Ignored:
    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float, exemplar: Any = None) -> None:
        pass

    def set(self, value: float) -> None:
        pass


def patch() -> None:
    from prometheus_client.metrics import Counter, Gauge, Histogram, MetricWrapperBase

    ignored = _Ignored()
    MetricWrapperBase.labels = lambda self, *args, **kwargs: ignored  # type: ignore[method-assign]
    Counter.inc = lambda self, amount=1, exemplar=None: None  # type: ignore[method-assign]
    Histogram.observe = lambda self, amount, exemplar=None: None  # type: ignore[method-assign]
    Gauge.set = lambda self, value: None  # type: ignore[method-assign]


if __name__ != "__main__":
    import os

    if os.environ.get("DUNNING_BENCH_UNMETERED") == "1":
        patch()
