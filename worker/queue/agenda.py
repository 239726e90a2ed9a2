"""The agenda: deferred jobs, durable in Redis, released in due-time order.

Every deferred job waits here, for a send slot two seconds ahead or until Monday
09:00, not in dramatiq's delay queue (which holds messages in worker memory and
stalls behind far-future ones). The
dispatcher moves due entries to the queue crash-safely: *claim* (due → claimed, with
a lease in Redis server time), *enqueue*, *done* (drop the claim). A dispatcher that
dies mid-batch leaves claims whose lease runs out; `sweep` puts them back. So nothing
is lost; an entry may be enqueued twice after a crash, and the contact log's delivery
key makes the second one a no-op. Memory stays flat: Redis holds the backlog, the
dispatcher only ever a batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import redis

_CLAIM = """
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local t = redis.call('TIME')
local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local out = {}
for i = 1, #found, 2 do
  local id = found[i]
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], deadline, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id) or ''
  out[#out + 1] = found[i + 1]
end
return out
"""

_DONE = """
for i = 1, #ARGV, 2 do
  local id, payload = ARGV[i], ARGV[i + 1]
  redis.call('ZREM', KEYS[2], id)
  if redis.call('ZSCORE', KEYS[1], id) == false and redis.call('HGET', KEYS[3], id) == payload then
    redis.call('HDEL', KEYS[3], id)
  end
end
return #ARGV / 2
"""

_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 10000)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  if redis.call('HEXISTS', KEYS[3], id) == 1 and redis.call('ZSCORE', KEYS[1], id) == false then
    redis.call('ZADD', KEYS[1], 0, id)
  end
end
return #ids
"""


@dataclass(frozen=True)
class Entry:
    """A due entry as the agenda keeps it: its payload's JSON (`raw`), read only if asked."""

    id: str
    raw: str
    due_ms: int = 0  # when it was due (milliseconds since the epoch)

    @cached_property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.raw)
        return decoded


_HOLD = """
local moved = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) < tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    table.insert(moved, id)
  end
end
return moved
"""

_PARK = """
local parked = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
  local payload = redis.call('HGET', KEYS[3], id)
  if payload and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('HSET', KEYS[5], id, payload)
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[3], id)
    table.insert(parked, id)
  end
end
return parked
"""

_UNPARK = """
local entries = redis.call('HGETALL', KEYS[5])
for i = 1, #entries, 2 do
  redis.call('HSET', KEYS[3], entries[i], entries[i + 1])
  redis.call('ZADD', KEYS[1], ARGV[1], entries[i])
end
local ids = {}
for i = 1, #entries, 2 do
  table.insert(ids, entries[i])
end
redis.call('DEL', KEYS[5])
return ids
"""

INVOICE_INDEX_TTL = 400 * 24 * 3600  # an invoice's index outlives any cadence; stale ids in it are harmless


class Agenda:
    """Deferred jobs by due time, indexed by invoice so that an event (paid, disputed,
    promised) can cancel, park or hold all of an invoice's pending entries at once."""

    def __init__(self, client: redis.Redis, prefix: str = "dunning:agenda", lease_ms: int = 60_000) -> None:
        self.client = client
        self.prefix = prefix
        self.due_key, self.claimed_key, self.payload_key = f"{prefix}:due", f"{prefix}:claimed", f"{prefix}:payload"
        self.lease_ms = lease_ms
        self._keys = [self.due_key, self.claimed_key, self.payload_key]
        self._claim = client.register_script(_CLAIM)
        self._done = client.register_script(_DONE)
        self._sweep = client.register_script(_SWEEP)
        self._hold = client.register_script(_HOLD)
        self._park = client.register_script(_PARK)
        self._unpark = client.register_script(_UNPARK)

    def _invoice_keys(self, invoice_id: str) -> list[str]:
        return [*self._keys, f"{self.prefix}:invoice:{invoice_id}", f"{self.prefix}:parked:{invoice_id}"]

    def schedule(self, entry_id: str, payload: Mapping[str, Any], at: datetime) -> None:
        """(Re)schedule an entry; the same id scheduled again replaces the earlier one."""
        self.schedule_many([(entry_id, payload, at)])

    def schedule_many(self, entries: Iterable[tuple[str, Mapping[str, Any], datetime]]) -> int:
        count = 0
        with self.client.pipeline(transaction=False) as pipe:
            for entry_id, payload, at in entries:
                pipe.hset(self.payload_key, entry_id, json.dumps(payload, ensure_ascii=False, sort_keys=True))
                pipe.zadd(self.due_key, {entry_id: _millis(at)})
                invoice_id = _invoice_of(payload)
                if invoice_id:
                    index = f"{self.prefix}:invoice:{invoice_id}"
                    pipe.sadd(index, entry_id)
                    pipe.expire(index, INVOICE_INDEX_TTL)
                count += 1
                if count % 1000 == 0:
                    pipe.execute()
            pipe.execute()
        return count

    def cancel(self, entry_ids: Sequence[str]) -> int:
        """Drop pending entries (payment received...); returns how many were pending."""
        if not entry_ids:
            return 0
        with self.client.pipeline() as pipe:
            pipe.zrem(self.due_key, *entry_ids)
            pipe.hdel(self.payload_key, *entry_ids)
            removed, _ = pipe.execute()
        return int(removed)

    def cancel_invoice(self, invoice_id: str) -> list[str]:
        """Drop every pending or parked entry of an invoice (it was paid); returns their ids."""
        members = sorted(m.decode() for m in self.client.smembers(f"{self.prefix}:invoice:{invoice_id}"))  # type: ignore[union-attr]
        if not members:
            return []
        with self.client.pipeline() as pipe:
            for member in members:
                pipe.zscore(self.due_key, member)
            pipe.hkeys(f"{self.prefix}:parked:{invoice_id}")
            *scores, parked = pipe.execute()
            pipe.delete(f"{self.prefix}:parked:{invoice_id}")
            pipe.delete(f"{self.prefix}:invoice:{invoice_id}")
            pipe.execute()
        self.cancel(members)
        held = {p.decode() if isinstance(p, bytes) else str(p) for p in parked}
        return [m for m, score in zip(members, scores, strict=True) if score is not None or m in held]

    def erase_account(self, account_id: str, invoice_ids: Iterable[str]) -> int:
        """Drop every entry of the account's invoices, and any other entry whose job names
        the account (an erasure: no plain copy of the person left here); how many."""
        removed = sum(len(self.cancel_invoice(invoice_id)) for invoice_id in invoice_ids)
        named = [f'"account_id": {json.dumps(account_id, ensure_ascii=False)}'.encode(),
                 f'"account_id": {json.dumps(account_id)}'.encode()]
        stray = [key.decode() for key, value in self.client.hscan_iter(self.payload_key)
                 if any(needle in value for needle in named)]
        return removed + self.cancel(stray)

    def hold_invoice(self, invoice_id: str, until: datetime) -> list[str]:
        """Move the invoice's entries due before `until` to `until` (a promise to pay); their ids."""
        return _ids(self._hold(keys=self._invoice_keys(invoice_id), args=[_millis(until)]))

    def park_invoice(self, invoice_id: str) -> list[str]:
        """Take the invoice's pending entries out of the schedule, kept aside (a dispute); their ids."""
        return _ids(self._park(keys=self._invoice_keys(invoice_id), args=[]))

    def park(self, entry_id: str, payload: Mapping[str, Any]) -> None:
        """Keep a job aside for its invoice until `unpark_invoice` (the worker met a dispute)."""
        invoice_id = _invoice_of(payload)
        if not invoice_id:
            raise ValueError("only a job with an invoice can be parked")
        with self.client.pipeline() as pipe:
            pipe.hset(f"{self.prefix}:parked:{invoice_id}", entry_id,
                      json.dumps(payload, ensure_ascii=False, sort_keys=True))
            pipe.sadd(f"{self.prefix}:invoice:{invoice_id}", entry_id)
            pipe.expire(f"{self.prefix}:invoice:{invoice_id}", INVOICE_INDEX_TTL)
            pipe.execute()

    def unpark_invoice(self, invoice_id: str, at: datetime) -> list[str]:
        """Put the invoice's parked entries back on the schedule at `at` (dispute resolved); their ids."""
        return _ids(self._unpark(keys=self._invoice_keys(invoice_id), args=[_millis(at)]))

    def parked(self, invoice_id: str) -> int:
        return int(self.client.hlen(f"{self.prefix}:parked:{invoice_id}"))

    def of_invoice(self, invoice_id: str) -> list[tuple[str, datetime | None]]:
        """The invoice's entries still to come: (id, due time), or (id, None) when paused by a dispute."""
        members = sorted(m.decode() for m in self.client.smembers(f"{self.prefix}:invoice:{invoice_id}"))  # type: ignore[union-attr]
        if not members:
            return []
        with self.client.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.zscore(self.due_key, member)
            pipe.hkeys(f"{self.prefix}:parked:{invoice_id}")
            *scores, parked = pipe.execute()
        held = {p.decode() if isinstance(p, bytes) else str(p) for p in parked}
        found: list[tuple[str, datetime | None]] = [
            (m, datetime.fromtimestamp(float(s) / 1000, UTC)) for m, s in zip(members, scores, strict=True)
            if s is not None]
        return sorted(found, key=lambda e: e[1] or datetime.max.replace(tzinfo=UTC)) + [(m, None) for m in sorted(held)]

    def upcoming(self, until: datetime, limit: int = 5000) -> list[tuple[str, datetime, dict[str, Any]]]:
        """Entries due up to `until` (those already due too), earliest first: (id, due, payload)."""
        found: list[Any] = list(self.client.zrangebyscore(
            self.due_key, "-inf", _millis(until), start=0, num=limit, withscores=True))
        if not found:
            return []
        ids = [key.decode() if isinstance(key, bytes) else str(key) for key, _ in found]
        payloads: list[Any] = list(self.client.hmget(self.payload_key, ids))
        return [(entry, datetime.fromtimestamp(float(score) / 1000, UTC), json.loads(payload))
                for entry, (_, score), payload in zip(ids, found, payloads, strict=True) if payload]

    def payload_of(self, entry_id: str) -> dict[str, Any] | None:
        """An entry's payload, scheduled or parked (for an invoice's pending steps)."""
        found = self.client.hget(self.payload_key, entry_id)
        if found is None:
            return None
        loaded: dict[str, Any] = json.loads(found)
        return loaded

    def parked_payload(self, invoice_id: str, entry_id: str) -> dict[str, Any] | None:
        found = self.client.hget(f"{self.prefix}:parked:{invoice_id}", entry_id)
        if found is None:
            return None
        loaded: dict[str, Any] = json.loads(found)
        return loaded

    def due_at(self, entry_id: str) -> datetime | None:
        score = self.client.zscore(self.due_key, entry_id)
        return datetime.fromtimestamp(float(score) / 1000, UTC) if score is not None else None

    def claim(self, now: datetime, limit: int = 1000) -> list[Entry]:
        """Take up to `limit` due entries, earliest first, leased to this dispatcher."""
        flat = self._claim(keys=self._keys, args=[_millis(now), limit, self.lease_ms])
        entries = []
        for index in range(0, len(flat), 3):
            raw = flat[index + 1].decode() if isinstance(flat[index + 1], bytes) else str(flat[index + 1])
            entry_id = flat[index].decode() if isinstance(flat[index], bytes) else str(flat[index])
            if raw:
                entries.append(Entry(entry_id, raw, int(float(flat[index + 2]))))
        return entries

    def done(self, entries: Sequence[Entry]) -> None:
        """The entries are in the queue now: forget them (unless rescheduled meanwhile)."""
        if entries:
            self._done(keys=self._keys, args=[part for e in entries for part in (e.id, e.raw)])

    def sweep(self) -> int:
        """Put back entries whose dispatcher died holding them."""
        return int(self._sweep(keys=self._keys, args=[]))

    def pending(self) -> int:
        return int(self.client.zcard(self.due_key)) + int(self.client.zcard(self.claimed_key))

    def due_count(self, now: datetime) -> int:
        return int(self.client.zcount(self.due_key, "-inf", _millis(now))) + int(self.client.zcard(self.claimed_key))

    def next_due(self) -> datetime | None:
        first = self.client.zrange(self.due_key, 0, 0, withscores=True)
        return datetime.fromtimestamp(float(first[0][1]) / 1000, UTC) if first else None


def _invoice_of(payload: Mapping[str, Any]) -> str | None:
    job = payload.get("job")
    invoice = job.get("invoice") if isinstance(job, dict) else None
    found = invoice.get("id") if isinstance(invoice, dict) else None
    return found if isinstance(found, str) else None


def _ids(found: Any) -> list[str]:
    return sorted(i.decode() if isinstance(i, bytes) else str(i) for i in found or [])


def _millis(moment: datetime) -> int:
    if moment.utcoffset() is None:
        raise ValueError("agenda times must be aware datetimes")
    return int(moment.timestamp() * 1000)
