"""Fuzzing the whole pipeline at the handler level: ingest -> processor -> query.

Inputs come three ways:
- generated: requests of records drawn from `record.schema.json` itself (hypothesis-jsonschema), so
  every schema-valid shape is fair game;
- mutated: such a record with one harmful change (an impossible date, a lone surrogate, deep nesting, an
  empty key, a number DynamoDB cannot hold, a 400 KB+ record, NaN, a duplicate id...);
- the corpus: a fixed list of every harmful input issue 8 names, and their harmless neighbours.

`run_case` drives one request body through the handlers (moto underneath, the local runtime's event
source mapping rules draining the queue in-process: rtp_cli/local/inprocess.py) and returns every
property it broke:
- a request answered 202 has every record PROCESSED or REJECTED, readable with 200 from the query handler;
- a refused request is a 4xx in the documented error shape, with a documented code;
- nothing is stored or counted twice (the batch's counters equal what it stored, once per id);
- nothing is dead-lettered and nothing stays queued.

This module drives only the HTTP-level handlers (no import of the domain package), so the same cases can
be run against older versions of handlers/ (`git checkout <older commit> -- handlers` in this tree, run
test_fuzz_pipeline.py, then `git checkout HEAD -- handlers`).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.handlers.harness import Pipeline

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "handlers" / "rtp_pipeline" / "record.schema.json"
RECORD_SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))

# The README's error table ("Errors"): every code a refusal may carry.
DOCUMENTED_CODES = {
    "VALIDATION_ERROR",
    "INVALID_JSON",
    "INVALID_BODY",
    "NOT_FOUND",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "IDEMPOTENCY_KEY_IN_USE",
    "IDEMPOTENCY_KEY_REUSED",
    "THROTTLED",
}
FINAL = {"PROCESSED", "REJECTED"}

ACCEPTED, REFUSED = "accepted", "refused"
DOOR = (f"{ACCEPTED}:", f"{REFUSED}:")  # problems about the door's verdict, not the pipeline's properties


@dataclass(frozen=True)
class Case:
    kind: str  # e.g. "date", "surrogate", "nesting"
    name: str
    body: bytes
    expect: str | None  # ACCEPTED, REFUSED, or None (generated: either is fine)


# --- building bodies --------------------------------------------------------------------------------
_DEEP = "__deep_value__"


def body_of(payload: Any, deep: str | None = None) -> bytes:
    """JSON as a client sends it (ASCII, so lone surrogates travel as \\ud800 escapes). `deep` replaces
    the string _DEEP: nesting thousands deep is spliced in as text, json.dumps would recurse."""
    text = json.dumps(payload)
    if deep is not None:
        text = text.replace(json.dumps(_DEEP), deep, 1)
    return text.encode("utf-8")


def nested(levels: int, kind: str, leaf: str = "1") -> str:
    """`levels` arrays or objects, one inside the other, around `leaf`, as JSON text."""
    if kind == "array":
        return "[" * levels + leaf + "]" * levels
    return '{"k":' * levels + leaf + "}" * levels


def record(**fields: Any) -> dict[str, Any]:
    return {"type": "t", "data": {"x": 1}, **fields}


def corpus() -> list[Case]:
    """Every harmful input named in issue 8, each next to a harmless neighbour that must still pass."""
    cases: list[Case] = []

    def add(kind: str, name: str, body: bytes, expect: str) -> None:
        cases.append(Case(kind, name, body, expect))

    # Dates: the pattern matches, the calendar does not.
    for name, stamp in [
        ("feb-30", "2024-02-30T00:00:00Z"),
        ("feb-29-not-leap", "2023-02-29T00:00:00Z"),
        ("year-0", "0000-01-01T00:00:00Z"),
        ("month-13", "2024-13-01T00:00:00Z"),
        ("day-0", "2024-01-00T00:00:00Z"),
        ("hour-24", "2024-01-01T24:00:00Z"),
        ("minute-60", "2024-01-01T00:60:00Z"),
        ("leap-second", "2016-12-31T23:59:60Z"),
        ("offset-99", "2024-01-01T00:00:00+99:00"),
        ("offset-minutes-60", "2024-01-01T00:00:00+01:60"),
        ("arabic-indic-digits", "\u0662\u0660\u0662\u0664-01-01T00:00:00Z"),
        ("fullwidth-digits", "\uff12\uff10\uff12\uff14-01-01T00:00:00Z"),
        ("trailing-newline", "2024-01-01T00:00:00Z\n"),
        ("before-year-1-in-utc", "0001-01-01T00:00:00+01:00"),
        ("after-9999-in-utc", "9999-12-31T23:59:59-01:00"),
    ]:
        add("date", name, body_of(record(timestamp=stamp)), REFUSED)
    for name, stamp in [
        ("leap-day", "2024-02-29T12:00:00Z"),
        ("lowercase-nanoseconds", "2024-01-01t00:00:00.123456789z"),
        ("space-max-offset", "2024-01-01 00:00:00+23:59"),
        ("year-1", "0001-01-01T00:00:00Z"),
    ]:
        add("date", name, body_of(record(timestamp=stamp)), ACCEPTED)
    # One impossible date takes nothing else down: the whole request is refused at the door.
    add(
        "date",
        "three-good-one-impossible",
        body_of({"records": [record(), record(), record(), record(timestamp="2024-02-30T00:00:00Z")]}),
        REFUSED,
    )

    # Unicode: lone surrogates anywhere (json.loads accepts "\ud800"); a valid pair is fine.
    for name, payload in [
        ("data-value", record(data={"x": "\ud800"})),
        ("data-key", record(data={"\udc00": 1})),
        ("source", record(source="\ud800")),
        ("deep-in-list", record(data={"a": [1, {"b": ["ok", "\udfff"]}]})),
        ("reversed-pair", record(data={"x": "\udc00\ud800"})),
        ("record-key", {**record(), "\ud800": 1}),
        ("type", record(type="\ud800")),
    ]:
        add("surrogate", name, body_of(payload), REFUSED)
    add("surrogate", "valid-pair", body_of(record(data={"emoji": "\ud83d\ude00"})), ACCEPTED)

    # Nesting: DynamoDB stores `data` (level 2 of the item) down to level 32; bodies beyond 64 levels
    # are not parsed at all.
    # data is level 2 of the stored item and "deep" level 3: 29 containers put the leaf at level 32.
    for levels, expect in [(29, ACCEPTED), (30, REFUSED), (33, REFUSED), (900, REFUSED), (5000, REFUSED)]:
        for kind in ("array", "object"):
            payload = record(data={"deep": _DEEP})
            add("nesting", f"data-{kind}-{levels}", body_of(payload, nested(levels, kind)), expect)
    add("nesting", "body-array-5000", nested(5000, "array").encode(), REFUSED)
    add("nesting", "body-object-5000", nested(5000, "object").encode(), REFUSED)
    add("nesting", "unterminated-5000", ("[" * 5000).encode(), REFUSED)

    # Empty names: DynamoDB refuses an empty attribute name at any depth.
    for name, data in [
        ("top", {"": 1}),
        ("nested", {"a": {"": 1}}),
        ("in-list", {"a": [{"": 1}]}),
    ]:
        add("empty-key", name, body_of(record(data=data)), REFUSED)
    add("empty-key", "empty-value-is-fine", body_of(record(data={"a": ""})), ACCEPTED)

    # Numbers: 38 significant digits, magnitude 1E-130 .. 9.99...E+125.
    for name, literal, expect in [
        ("39-digits", "123456789012345678901234567890123456789", REFUSED),
        ("38-digits", "12345678901234567890123456789012345678", ACCEPTED),
        ("ten-to-the-40", "1" + "0" * 40, ACCEPTED),
        ("1e126", "1e126", REFUSED),
        ("9.9e125", "9.9e125", ACCEPTED),
        ("1e-131", "1e-131", REFUSED),
        ("1e-130", "1e-130", ACCEPTED),
        ("denormal", "5e-324", REFUSED),
        ("underflow-to-zero", "1e-400", REFUSED),
        ("overflow-to-infinity", "1e400", REFUSED),
        ("5000-digit-int", "9" * 5000, REFUSED),
        ("negative-zero", "-0.0", ACCEPTED),
    ]:
        add("number", name, body_of(record(data={"n": _DEEP}), literal), expect)
    for constant in ("NaN", "Infinity", "-Infinity"):
        add("number", constant.lower(), body_of(record(data={"n": _DEEP}), constant), REFUSED)

    # Size: 400 KB per item, names included.
    add("size", "410kb-string", body_of(record(data={"s": "x" * 410_000})), REFUSED)
    add("size", "many-keys-over-400kb", body_of(record(data={f"k{n:06}": n for n in range(60_000)})), REFUSED)
    add("size", "300kb-string", body_of(record(data={"s": "x" * 300_000})), ACCEPTED)
    add("size", "70kb-key", body_of(record(data={"k" * 70_000: 1})), REFUSED)

    # Ids: unique within a request.
    add("ids", "duplicate-ids", body_of({"records": [record(id="a1"), record(id="a1")]}), REFUSED)
    add("ids", "id-newline", body_of(record(id="a\n")), REFUSED)

    # Other framings.
    add("framing", "utf16-body", json.dumps(record()).encode("utf-16"), REFUSED)
    add("framing", "bom", b"\xef\xbb\xbf" + body_of(record()), REFUSED)
    add("framing", "duplicate-json-keys", b'{"type": "t", "data": {"x": 1}, "data": {"y": 2}}', ACCEPTED)
    add("framing", "nul-in-string", body_of(record(data={"x": "a\u0000b"})), ACCEPTED)
    add("framing", "noncharacter", body_of(record(data={"x": "\uffff"})), ACCEPTED)
    return cases


# --- strategies -------------------------------------------------------------------------------------
# Any JSON value, as hypothesis-jsonschema draws one for an unconstrained schema: big integers, floats up to
# 1.8e308, any text (empty keys included).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def from_record_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid against `schema`: objects composed from its `properties`/`required` here, every other
    subschema (the strings, with their patterns and lengths) drawn by hypothesis-jsonschema.

    hypothesis-jsonschema 0.23.1 cannot draw objects under the pinned hypothesis 6.170 (it calls
    `cu.many(...).more()`, which hypothesis no longer has: AttributeError), so the object keywords the
    record schema uses are interpreted here; an object keyword this does not know fails loudly."""
    if schema.get("type") != "object":
        return from_schema(schema)
    unknown = set(schema) - {"$schema", "title", "description", "type", "required", "properties"}
    unknown -= {"additionalProperties"} if schema.get("additionalProperties") is False else set()
    assert not unknown, f"object keywords this strategy does not interpret: {unknown}"
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return st.dictionaries(st.text(max_size=8), json_values, max_size=6)
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {name: from_record_schema(sub) for name, sub in properties.items() if name in required},
        optional={name: from_record_schema(sub) for name, sub in properties.items() if name not in required},
    )


records = from_record_schema(RECORD_SCHEMA)


@st.composite
def generated(draw: st.DrawFn) -> Case:
    """A request of schema-valid records: one record, or a batch of 1 to 4."""
    if draw(st.booleans()):
        return Case("generated", "single", body_of(draw(records)), None)
    batch = draw(st.lists(records, min_size=1, max_size=4))
    return Case("generated", "batch", body_of({"records": batch}), None)


Mutation = Callable[[st.DrawFn, dict[str, Any]], tuple[Any, str | None]]


def _date(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    stamp = draw(
        st.sampled_from(
            [
                "2024-02-30T00:00:00Z",
                "0000-01-01T00:00:00Z",
                "2024-13-01T00:00:00Z",
                "2024-01-01T24:00:00Z",
                "2024-01-01T00:00:00+99:00",
                "\u0662\u0660\u0662\u0664-01-01T00:00:00Z",
                "2023-02-29T10:00:00+01:00",
            ]
        )
    )
    return {**rec, "timestamp": stamp}, None


def _surrogate(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    lone = draw(st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]))
    where = draw(st.sampled_from(["value", "key", "source", "nested"]))
    data = copy.deepcopy(rec["data"])
    if where == "value":
        data["s"] = "a" + lone
    elif where == "key":
        data[lone + "k"] = 1
    elif where == "nested":
        data["n"] = [{"m": [lone]}]
    else:
        return {**rec, "source": lone, "data": data}, None
    return {**rec, "data": data}, None


def _nesting(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    levels = draw(st.sampled_from([30, 33, 64, 900, 5000]))
    kind = draw(st.sampled_from(["array", "object"]))
    return {**rec, "data": {**rec["data"], "deep": _DEEP}}, nested(levels, kind)


def _empty_key(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    inner = draw(st.sampled_from([{"": 1}, {"a": {"": None}}, [{"": "x"}]]))
    return {**rec, "data": {**rec["data"], "e": inner}}, None


def _number(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    literal = draw(st.sampled_from(["1" * 39, "1e126", "-1e-131", "5e-324", "1e-400", "NaN", "-Infinity"]))
    return {**rec, "data": {**rec["data"], "n": _DEEP}}, literal


def _size(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    return {**rec, "data": {**rec["data"], "fill": "x" * draw(st.integers(410_000, 420_000))}}, None


def _duplicate_id(draw: st.DrawFn, rec: dict[str, Any]) -> tuple[Any, str | None]:
    same = {**rec, "id": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True))}
    return {"records": [same, same]}, None


MUTATIONS: dict[str, Mutation] = {
    "date": _date,
    "surrogate": _surrogate,
    "nesting": _nesting,
    "empty-key": _empty_key,
    "number": _number,
    "size": _size,
    "duplicate-id": _duplicate_id,
}


@st.composite
def mutated(draw: st.DrawFn, only: str | None = None) -> Case:
    """A schema-valid record with one harmful change (of kind `only`, or any): the request must be refused."""
    kind = only or draw(st.sampled_from(sorted(MUTATIONS)))
    payload, deep = MUTATIONS[kind](draw, draw(records))
    return Case("mutated", kind, body_of(payload, deep), REFUSED)


# --- the properties --------------------------------------------------------------------------------
def run_case(pipeline: Pipeline, case: Case, answers: Counter[str] | None = None) -> list[str]:
    """Send one request through ingest, drain the queue through the processor, read everything back
    through the query handler. Returns every broken property as "kind: detail" (empty: all hold).
    `answers` counts the POST's answers (accepted, refused, 5xx)."""
    problems: list[str] = []
    dead_before = pipeline.queued(pipeline.dlq_url)
    response = pipeline.post_records(None, raw=case.body)
    if answers is not None:
        answers[ACCEPTED if response.status == 202 else "5xx" if response.status >= 500 else REFUSED] += 1
    if response.status >= 500:
        return [f"5xx: POST answered {response.status}"]
    if response.status != 202:
        problems.extend(_error_shape_problems(response.status, response.headers, response.body))
        if case.expect == ACCEPTED:
            problems.append(f"refused: a valid request was refused with {response.status}")
        return problems
    if case.expect == REFUSED:
        problems.append("accepted: a request the store cannot hold was accepted with 202")
    pipeline.drain(max_polls=10 * pipeline.max_receive_count)
    if pipeline.queued(pipeline.dlq_url) > dead_before:
        problems.append("dead-lettered: the request's message went to the DLQ")
    if pipeline.queued() > 0:
        problems.append("stuck: messages still queued after draining")
    batch_id, ids = response.body["batchId"], response.body["ids"]
    stored_here = set()
    unreadable = 0
    for record_id in ids:
        got = pipeline.get_record(record_id)
        if got.status != 200:
            problems.append(f"unreadable: GET /records answered {got.status}")
            unreadable += 1
            continue
        if got.body.get("status") not in FINAL:
            problems.append(f"unfinished: record status {got.body.get('status')}")
        if got.body.get("batchId") == batch_id:
            stored_here.add(record_id)
    view = pipeline.get_batch(batch_id)
    if view.status != 200:
        return [*problems, f"unreadable: GET /batches answered {view.status}"]
    batch = view.body
    if batch["status"] != "COMPLETE":
        return [*problems, f"unfinished: batch {batch['status']} ({batch['pending']} pending)"]
    if unreadable:
        return problems  # which records the batch stored cannot be told
    if batch["processed"] + batch["rejected"] != len(stored_here):
        problems.append(
            f"counted-twice: batch counts {batch['processed'] + batch['rejected']} stored, "
            f"{len(stored_here)} records carry its id"
        )
    if batch["duplicates"] != len(set(ids)) - len(stored_here):
        problems.append(f"counted-twice: {batch['duplicates']} duplicates counted")
    return problems


def _error_shape_problems(status: int, headers: dict[str, str], body: Any) -> list[str]:
    if not 400 <= status < 500:
        return [f"shape: status {status}"]
    error = body.get("error") if isinstance(body, dict) else None
    if headers.get("content-type") != "application/json" or set(body or {}) != {"error"}:
        return ["shape: not the JSON error shape"]
    if not isinstance(error, dict) or set(error) != {"code", "message", "details", "requestId"}:
        return ["shape: error object without code, message, details, requestId"]
    if (
        error["code"] not in DOCUMENTED_CODES
        or not isinstance(error["details"], list)
        or not error["message"]
    ):
        return [f"shape: undocumented code {error['code']} or malformed details"]
    return []


def summary(failures: list[tuple[Case, list[str]]], total: int) -> str:
    """How many cases broke a property, by what they broke and by kind of input, with an example each."""
    by_problem: Counter[str] = Counter()
    by_input: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for case, problems in failures:
        by_input[f"{case.kind}/{case.name}"] += 1
        for problem in problems:
            kind = problem.split(":", 1)[0]
            if kind not in examples:
                examples[kind] = f"{case.kind}/{case.name}: {problem} <- {case.body[:100]!r}"
        for kind in {problem.split(":", 1)[0] for problem in problems}:
            by_problem[kind] += 1
    broken = sum(1 for _, problems in failures if any(not p.startswith(DOOR) for p in problems))
    lines = [
        f"{len(failures)} of {total} cases failed: {broken} broke a pipeline property (5xx, shape, "
        f"dead-lettered, stuck, unfinished, unreadable, counted-twice), the others only the door's verdict"
    ]
    lines += [f"  {count:4} {kind}   e.g. {examples[kind]}" for kind, count in by_problem.most_common()]
    lines += ["  by input: " + ", ".join(f"{name} {count}" for name, count in by_input.most_common())]
    return "\n".join(lines)
