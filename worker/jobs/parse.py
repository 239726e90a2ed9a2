"""Reading jobs from what billing systems send: a JSON document, or JSON Lines.

Whatever arrives — broken JSON, wrong types, huge values, bytes that are not
UTF-8 — each record comes back as a `Parsed` with either a valid `Job` or the
reasons it is not one, and the original text so it can be kept as a dead letter.
Nothing here raises on bad input.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schedules import Profile
from worker.jobs.contract import Job
from worker.masking import mask

MAX_RECORD_BYTES = 1_000_000
_EXPECTED = {"string_type": "a string", "bool_type": "true or false", "int_type": "a whole number",
             "model_type": "an object", "dict_type": "an object", "model_attributes_type": "an object",
             "float_type": "a number", "list_type": "an array", "tuple_type": "an array"}


@dataclass
class Parsed:
    """One record of the input: where it was, the job or the errors, and its raw text."""

    where: str
    data: object
    text: str = ""
    job: Job | None = None
    job_id: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.job is not None

    @property
    def raw(self) -> str:
        """The record as received (its text when there was one), kept with a rejection."""
        return self.text or _dump(self.data)


def parse_job(data: object, profiles: Mapping[str, Profile], where: str = "", raw: str = "",
              trusted: bool = False) -> Parsed:
    """Validate one decoded JSON value as a job (`trusted`: one this service wrote after
    validating it, whose addresses need no second check — see `contract._trusted`)."""
    parsed = Parsed(where, data, raw)
    if not isinstance(data, dict):
        parsed.errors.append(f"(job): {_kind(data)} found; a job is a JSON object")
        return parsed
    job_id = data.get("job_id")
    parsed.job_id = job_id if isinstance(job_id, str) else None
    try:
        parsed.job = Job.model_validate(data, context={"profiles": profiles, "trusted": trusted})
    except ValidationError as error:
        parsed.errors.extend(describe(item) for item in error.errors())
    return parsed


def read_jobs(data: bytes, profiles: Mapping[str, Profile]) -> Iterator[Parsed]:
    """Jobs from a JSON document (one object or an array of them) or from JSON Lines."""
    try:
        text = data.decode("utf-8-sig")
        whole = loads(text) if text.strip() else None
    except json.JSONDecodeError as error:
        if text.lstrip().split("\n", 1)[0].strip() in ("{", "["):
            # A pretty-printed document, not JSON Lines: one error, where it is.
            yield Parsed("document", None, text, errors=[f"(job): not valid JSON: {_said(error)} at line "
                                                   f"{error.lineno} column {error.colno}"])
            return
        whole = None
    except (UnicodeDecodeError, ValueError, RecursionError):
        whole = None
    else:
        if isinstance(whole, list):
            for index, item in enumerate(whole, start=1):
                yield parse_job(item, profiles, f"item {index}")
            return
        if isinstance(whole, dict):
            yield parse_job(whole, profiles, "line 1" if text.strip().count("\n") == 0 else "document", text)
            return
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield _read_line(line, number, profiles)


def _read_line(line: bytes, number: int, profiles: Mapping[str, Profile]) -> Parsed:
    where = f"line {number}"
    raw = line.decode("utf-8", errors="backslashreplace")
    if len(line) > MAX_RECORD_BYTES:
        return Parsed(where, None, raw[:200] + "...", errors=[f"(job): {len(line)} bytes; at most {MAX_RECORD_BYTES} "
                                                         "bytes per job"])
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return Parsed(where, None, raw, errors=[f"(job): not UTF-8 text (byte 0x{line[error.start]:02x} at column "
                                          f"{error.start + 1})"])
    try:
        value = loads(text)
    except json.JSONDecodeError as error:
        return Parsed(where, None, raw, errors=[f"(job): not valid JSON: {_said(error)} at column {error.colno}"])
    except (ValueError, RecursionError) as error:
        return Parsed(where, None, raw, errors=[f"(job): not valid JSON: {error}"])
    return parse_job(value, profiles, where, text)


def _said(error: json.JSONDecodeError) -> str:
    """json's message without its own trailing "at" ("Invalid control character at")."""
    return error.msg.removesuffix(" at")


def describe(error: ErrorDetails) -> str:
    """One validation error as `path: what is wrong`, with personal values masked."""
    location = [str(part) for part in error["loc"]]
    context = error.get("ctx") or {}
    if "field" in context:
        location.append(str(context["field"]))
    path = ".".join(location) or "(job)"
    kind, value = error["type"], error.get("input")
    leaf = location[-1] if location else ""
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "extra_forbidden":
        return f"{path}: unknown field (not part of the job contract, version 1)"
    if kind in _EXPECTED:
        got = _kind(value) if isinstance(value, (dict, list)) or value is None else f"{_shown(leaf, value)}"
        return f"{path}: expected {_EXPECTED[kind]}, got {got}"
    if kind == "literal_error":
        return f"{path}: {_shown(leaf, value)} is not one of {context.get('expected')}"
    if kind == "string_too_short":
        return f"{path}: must not be empty"
    if kind == "string_too_long":
        return f"{path}: {len(value)} characters; at most {context.get('max_length')} allowed"
    return f"{path}: {error['msg']}"


def _shown(leaf: str, value: Any) -> str:
    if isinstance(value, str):
        shown = mask(leaf, value)
        return "'" + (shown if len(shown) <= 40 else shown[:37] + "...") + "'"
    if isinstance(value, (dict, list)) or value is None:
        return _kind(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def loads(text: str) -> Any:
    """json.loads without NaN/Infinity, which are not JSON."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not allowed in JSON")
    return json.loads(text, parse_constant=refuse)


def _dump(data: object) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(data)
