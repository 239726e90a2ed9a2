"""Reading jobs from files and streams: nothing crashes, every bad record is reported."""

from __future__ import annotations

import json

from conftest import SAMPLE, job_data

from worker.jobs.parse import read_jobs
from worker.policy import profiles


def read(data: bytes) -> list[tuple[str, str | None, list[str]]]:
    return [(p.where, p.job_id, p.errors) for p in read_jobs(data, profiles(None))]


def test_a_single_json_document() -> None:
    text = json.dumps(SAMPLE, indent=2, ensure_ascii=False).encode()
    assert read(text) == [("document", "INV-2026-0042/due_day", [])]


def test_an_array_of_jobs_reports_items() -> None:
    text = json.dumps([SAMPLE, job_data(job_id="B", debtor__phone="nope")]).encode()
    results = read(text)
    assert [r[0] for r in results] == ["item 1", "item 2"]
    assert results[1][2][0].startswith("debtor.phone: 'nope' is not a valid phone number")


def test_json_lines_with_broken_records_in_between() -> None:
    lines = [json.dumps(SAMPLE), "{not json", "", json.dumps(job_data(job_id="X", invoice__amount_due=1.5)),
             "\"just a string\"", "[1, 2]"]
    results = read("\n".join(lines).encode())
    assert [r[0] for r in results] == ["line 1", "line 2", "line 4", "line 5", "line 6"]
    assert results[0][2] == []
    assert results[1][2][0].startswith("(job): not valid JSON: Expecting property name")
    assert results[2][1] == "X" and results[2][2][0].startswith("invoice.amount_due: 1.5 is a JSON number")
    assert results[3][2] == ["(job): a string found; a job is a JSON object"]
    assert results[4][2] == ["(job): an array found; a job is a JSON object"]


def test_bytes_that_are_not_utf8_are_reported_with_their_position() -> None:
    data = json.dumps(SAMPLE).encode() + b"\n" + b'{"job_id": "caf\xe9"}\n'
    results = read(data)
    assert results[0][2] == []
    assert results[1] == ("line 2", None, ["(job): not UTF-8 text (byte 0xe9 at column 16)"])


def test_huge_and_non_json_values_are_refused_not_crashed_on() -> None:
    huge_int = "9" * 5000
    lines = [
        '{"job_id": "a", "invoice": {"amount_due": ' + huge_int + '}}',
        '{"job_id": "b", "invoice": {"amount_due": NaN}}',
        '{"job_id": "c", "invoice": {"amount_due": 1e999}}',
        "[" * 100_000 + "]" * 100_000,
        json.dumps(job_data(job_id="d", debtor__name="x" * 1_000_000)),
    ]
    results = read("\n".join(lines).encode())
    assert len(results) == 5
    assert all(errors for _, _, errors in results)
    assert "not valid JSON" in results[0][2][0]
    assert "NaN is not allowed" in results[1][2][0]
    assert any(e.startswith("invoice.amount_due: inf is a JSON number") for e in results[2][2])
    assert "not valid JSON" in results[3][2][0]
    assert any(e.startswith("(job): ") and "bytes" in e for e in results[4][2]) or \
        any(e.startswith("debtor.name: 1000000 characters") for e in results[4][2])


def test_a_broken_pretty_printed_document_is_one_error_with_its_line() -> None:
    text = json.dumps(SAMPLE, indent=2).replace('"currency": "CNY",', '"currency": "CNY"')
    [(where, _, errors)] = read(text.encode())
    assert where == "document"
    assert errors == ["(job): not valid JSON: Expecting ',' delimiter at line 8 column 5"]


def test_empty_input_yields_nothing() -> None:
    assert read(b"") == [] and read(b"\n\n  \n") == []


def test_a_byte_order_mark_is_tolerated() -> None:
    assert read(b"\xef\xbb\xbf" + json.dumps(SAMPLE).encode())[0][2] == []


def test_a_control_character_in_a_string_is_named_once() -> None:
    [result] = read(b'{"job_id": "a\tb"}')
    assert result[2] == ["(job): not valid JSON: Invalid control character at column 14"]
