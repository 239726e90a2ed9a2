"""For `bench/throughput.py --sealing` only: the vault as a pass-through, so a run with
personal data in plain text can be timed against a run with it sealed (the "before").

Python imports `sitecustomize` at start-up from the path, so a `dunning worker` started
with this folder on PYTHONPATH — and its dramatiq processes — run unsealed. Nothing in
the product can switch sealing off; this file is not part of the package.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def patch() -> Callable[[], None]:
    """Make `Vault` store values as given (blind indexes: the address, case-folded); returns
    what undoes it."""
    from worker.db.vault import Vault

    def index(self: Any, address: str, conn: Any = None) -> str:
        return address.strip().casefold()

    def seal_event(self: Any, conn: Any, values: Any) -> dict[str, Any]:
        row = dict(values)
        if row.get("address"):
            row["address_index"] = index(self, row["address"])
        return row

    def seal_delivery(self: Any, conn: Any, row: Any) -> dict[str, Any]:
        return {**row, "recipient_index": index(self, row["recipient"])}

    replaced = {"index": index, "seal_event": seal_event, "seal_delivery": seal_delivery,
                "seal": lambda self, conn, owner, field, value: value,
                "open_row": lambda self, row, conn=None: dict(row),
                "prepare": lambda self, conn, owners, make=True: None,
                "check": lambda self: None, "index_legacy": lambda self, batch=1000: 0}
    originals = {name: getattr(Vault, name) for name in replaced}
    for name, function in replaced.items():
        setattr(Vault, name, function)

    def undo() -> None:
        for name, function in originals.items():
            setattr(Vault, name, function)
    return undo


if __name__ != "__main__":
    import os

    if os.environ.get("DUNNING_BENCH_UNSEALED") == "1":
        patch()
