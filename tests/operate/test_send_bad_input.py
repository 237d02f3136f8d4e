"""`rtp send --file` never lets one bad line cost good ones, never raises on any input, and leaves no
journal behind a run that sent nothing.

Before: a line holding "\\ud800" raised UnicodeEncodeError (a traceback) and left a journal that made the
next run ask for --resume; one NaN line out of 600 got lines 1-500 refused as one batch by the API.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rtp_pipeline.validation import validate_record

import rtp_cli.operate.send as send_module
from rtp_cli.operate.api_client import ApiClient, ApiResponse
from rtp_cli.operate.inputs import (
    MAX_JSON_DEPTH,
    InputOptions,
    InvalidLine,
    Item,
    LineError,
    batches,
    json_depth,
    parse_line,
    read_items,
)
from rtp_cli.operate.send import BulkOptions, RetryPolicy, SendSummary, bulk_send
from tests.operate.fake_api import FakeState, fake_api
from tests.tiers import examples

CREDS = ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)
FAST = RetryPolicy(max_attempts=3, base_seconds=0.001, cap_seconds=0.01)
GOOD = '{"type": "reading", "data": {"n": %d}}'


class RecordingClient(ApiClient):
    """The real client; keeps every body it sends so a test can check what reached the API."""

    def __init__(self, url: str) -> None:
        super().__init__(url, "us-east-1", lambda: CREDS, timeout=5)
        self.bodies: list[bytes] = []

    def post_records(self, body: bytes, idempotency_key: str | None = None) -> ApiResponse:
        self.bodies.append(body)
        return super().post_records(body, idempotency_key)


@pytest.fixture
def api() -> Iterator[tuple[RecordingClient, FakeState]]:
    with fake_api() as (url, state):
        yield RecordingClient(url), state


def run(client: ApiClient, path: Path, tmp: Path, **overrides: Any) -> SendSummary:
    options: dict[str, Any] = {
        "env": "test",
        "max_records": 500,
        "max_bytes": 1_000_000,
        "concurrency": 2,
        "journal_dir": tmp / "journals",
        **overrides,
    }
    return bulk_send(
        lambda: path.open("rb"), str(path), client, BulkOptions(**options), InputOptions(), policy=FAST
    )


def strictly_parsed(body: bytes) -> Any:
    """What the ingest function accepts: UTF-8 JSON without NaN/Infinity or lone surrogates."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    value = json.loads(body.decode("utf-8"), parse_constant=refuse)
    body.decode("utf-8").encode("utf-8")  # lone surrogates cannot survive a UTF-8 round trip
    return value


# ---- the cases from the issue --------------------------------------------------------------------------
def test_a_lone_surrogate_line_is_reported_and_the_rest_is_sent(
    api: tuple[RecordingClient, FakeState], tmp_path: Path
) -> None:
    client, state = api
    lines = [GOOD % n for n in range(1, 11)]
    lines[3] = '{"type": "reading", "data": {"text": "\\ud800"}}'
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = run(client, path, tmp_path)
    assert [(p.line, p.reason) for p in summary.rejected] == [
        (
            4,
            "data.text holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
            "which is not valid Unicode",
        )
    ]
    assert summary.accepted_records == 9 and state.stored_record_count() == 9
    for body in client.bodies:
        strictly_parsed(body)


def test_a_run_that_sends_nothing_leaves_no_journal(
    api: tuple[RecordingClient, FakeState], tmp_path: Path
) -> None:
    client, _ = api
    path = tmp_path / "in.jsonl"
    path.write_text('{"type": "reading", "data": {"text": "\\ud800"}}\n{"type": "x", "data": NaN}\n')
    first = run(client, path, tmp_path)
    assert [p.line for p in first.rejected] == [1, 2] and first.accepted_records == 0
    assert first.journal is None and list((tmp_path / "journals").glob("*")) == []
    assert client.bodies == []
    second = run(client, path, tmp_path)  # no "pass --resume": there is nothing to resume
    assert [p.line for p in second.rejected] == [1, 2]


def test_a_crash_before_the_first_request_leaves_no_journal(
    api: tuple[RecordingClient, FakeState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = api
    path = tmp_path / "in.jsonl"
    path.write_text(GOOD % 1 + "\n")

    def broken(*_: Any) -> Iterator[Any]:
        raise RuntimeError("reader bug")
        yield  # pragma: no cover

    monkeypatch.setattr(send_module, "read_items", broken)
    with pytest.raises(RuntimeError, match="reader bug"):
        run(client, path, tmp_path)
    assert list((tmp_path / "journals").glob("*")) == []
    monkeypatch.undo()
    assert run(client, path, tmp_path).accepted_records == 1  # and the next run just runs


def test_one_nan_line_in_600_costs_only_itself(
    api: tuple[RecordingClient, FakeState], tmp_path: Path
) -> None:
    client, state = api
    lines = [GOOD % n for n in range(1, 601)]
    lines[249] = '{"type": "reading", "data": {"n": NaN}}'
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = run(client, path, tmp_path)
    assert [(p.line, p.reason) for p in summary.rejected] == [
        (250, "not valid JSON: NaN is not a JSON number")
    ]
    assert summary.accepted_records == 599 and state.stored_record_count() == 599
    assert summary.accepted_batches == 2  # 500 + 99: the bad line was never in a batch
    for body in client.bodies:
        strictly_parsed(body)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"type": "t", "data": {"x": Infinity}}', "Infinity is not a JSON number"),
        ('{"type": "t", "data": {"x": -Infinity}}', "-Infinity is not a JSON number"),
        ('{"type": "t", "data": {"x": 1e400}}', "number 1e400 is out of range"),
        ('{"type": "t", "data": {"\\udc00": 1}}', "a key in data holds a lone UTF-16 surrogate"),
        ('{"type": "t", "data": {"l": ["ok", "\\udfff"]}}', "data.l[1] holds a lone UTF-16 surrogate"),
        ('{"type": "t", "data": {"d": ' + "[" * 5000 + "]" * 5000 + "}}", "nested 5002 levels deep"),
        ('{"type": "t", "data": {"d": ' + "{}" + "}}", "data"),  # valid JSON: reaches the API's rules
        ("\xff\xfe{}", "not valid UTF-8"),
    ],
)
def test_strict_parse_reasons(line: str, reason: str) -> None:
    raw = line.encode("latin-1") if line.startswith("\xff") else line.encode("utf-8")
    items = list(read_items(io.BytesIO(raw + b"\n"), InputOptions()))
    assert len(items) == 1
    if reason == "data":
        assert isinstance(items[0], Item)
    else:
        assert isinstance(items[0], InvalidLine) and reason in items[0].reason, items[0]


def test_a_valid_surrogate_pair_is_a_character_not_an_error() -> None:
    items = list(read_items(io.BytesIO(b'{"type": "t", "data": {"e": "\\ud83d\\ude00"}}\n'), InputOptions()))
    assert isinstance(items[0], Item) and items[0].record["data"]["e"] == "\N{GRINNING FACE}"


def test_nesting_at_the_limit_is_accepted() -> None:
    inner = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    assert isinstance(parse_line(('{"data": {"d": ' + inner + "}}").encode()), dict)
    with pytest.raises(LineError, match="at most 64 levels"):
        parse_line(('{"data": {"d": [' + inner + "]}}").encode())


# ---- no input makes the reader raise ------------------------------------------------------------------
def _check_reader(data: bytes, options: InputOptions) -> None:
    """Every yielded item is a record the API would accept or a numbered reason; nothing raises."""
    items = list(read_items(io.BytesIO(data), options))
    lines = [item.line for item in items]
    assert lines == sorted(lines)
    for item in items:
        if isinstance(item, InvalidLine):
            assert item.line >= 1 and item.reason
            continue
        assert isinstance(item, Item)
        assert validate_record(item.record) == []
        assert strictly_parsed(item.encoded) == item.record
    invalid: list[InvalidLine] = []
    for batch in batches(iter(items), max_records=7, max_bytes=2_000, invalid=invalid):
        assert strictly_parsed(batch.body())["records"]


JSON_TOKENS = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b'"type"',
        b'"data"',
        b'"id"',
        b'"timestamp"',
        b'"2024-02-30T00:00:00Z"',
        b'"t"',
        b"NaN",
        b"-Infinity",
        b"1e999",
        b"-0",
        b"null",
        b"true",
        b'"\\ud800"',
        b'"\\udc00\\ud800"',
        b'"\\ud83d\\ude00"',
        b"\xff",
        b"\xed\xa0\x80",
        b"\n",
        b"\r",
        b"\x00",
        b'{"type":"t","data":{',
        b"[" * 70,
        b"]" * 70,
        b'"\\',
    ]
)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JSON_TOKENS, max_size=60).map(b"".join))
def test_json_lines_reader_never_raises_on_token_soup(data: bytes) -> None:
    _check_reader(data, InputOptions())


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=400))
def test_json_lines_reader_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    _check_reader(data, InputOptions(record_type="t"))


# Any code point, lone surrogates included (and often: they are what the API refuses).
ANY_TEXT = st.text(
    alphabet=st.characters(exclude_categories=[]) | st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    max_size=8,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | ANY_TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.fixed_dictionaries({"type": st.just("t"), "data": JSON_VALUES}), max_size=5))
def test_json_lines_reader_on_records_with_any_values(records: list[dict[str, Any]]) -> None:
    """Python's json writes NaN, Infinity and lone surrogates (as escapes) when asked: exactly the lines a
    producer can hand `rtp send`. Each is refused by line, or sent exactly as read."""
    data = b"".join(json.dumps(record).encode("ascii") + b"\n" for record in records)
    _check_reader(data, InputOptions())
    items = list(read_items(io.BytesIO(data), InputOptions()))
    for record, item in zip(records, items, strict=True):
        text = json.dumps(record)
        clean = "NaN" not in text and "Infinity" not in text
        if clean and not any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(record, ensure_ascii=False)):
            assert isinstance(item, Item) == (validate_record(record) == []), item
        elif isinstance(item, Item):  # a NaN-looking string is fine, a NaN number is not
            assert not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(item.record))


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child)
    else:
        yield value


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=400))
def test_csv_reader_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    _check_reader(b"a,b\n" + data, InputOptions(fmt="csv", record_type="t"))
    _check_reader(data, InputOptions(fmt="csv", record_type="t", id_column="a"))


def test_an_undecodable_csv_row_costs_only_itself() -> None:
    """A strict decoder ended the file at the first bad byte past the first 8 KiB (lines after it were
    silently lost) and raised for ever on a truncated last character."""
    data = b"a,b\n" + b"1,2\n" * 5000 + b"\xff\xfe,1\n" + b"2,3\n" * 10 + b"4,\xc3"
    items = list(read_items(io.BytesIO(data), InputOptions(fmt="csv", record_type="t")))
    invalid = [(item.line, item.reason) for item in items if isinstance(item, InvalidLine)]
    assert invalid == [(5002, "not valid UTF-8"), (5013, "not valid UTF-8")]
    assert sum(isinstance(item, Item) for item in items) == 5010


# ---- the depth scan is skipped only where it cannot refuse ----------------------------------------------
BRACKETY = st.lists(
    st.sampled_from(['"[', '{"', "[", "]", "{", "}", '"', ",", "1", '"k":', "\\", "x"]), max_size=200
).map("".join)


@settings(max_examples=examples(300), deadline=None)
@given(levels=st.integers(0, 80), noise=BRACKETY)
def test_a_line_is_refused_for_depth_exactly_when_nested_past_the_limit(levels: int, noise: str) -> None:
    line = '{"type": "t", "data": {"d": ' + "[" * levels + noise + "]" * levels + "}}"
    refused_for_depth = True
    try:
        parse_line(line.encode())
        refused_for_depth = False
    except LineError as error:
        refused_for_depth = "levels deep" in str(error)
    assert refused_for_depth == (json_depth(line) > MAX_JSON_DEPTH)


def test_brackets_inside_strings_past_the_limit_do_not_refuse_a_shallow_line() -> None:
    line = '{"type": "t", "data": {"s": "' + "[{" * 100 + '"}}'
    assert parse_line(line.encode())["data"]["s"] == "[{" * 100
    deep = '{"type": "t", "data": {"d": ' + "[" * 70 + "]" * 70 + "}}"
    with pytest.raises(LineError, match="nested 72 levels deep"):
        parse_line(deep.encode())
