"""The hand-written validator (`rtp_pipeline.validation.validate_record`) against jsonschema's
Draft4Validator on the same schema file, over hypothesis-generated valid and invalid records.

Where both apply the same rules they must agree on valid/invalid AND on which fields are at fault. The
hand-written validator is stricter in exactly these places (its module docstring lists them), each
asserted separately below: jsonschema accepts, the hand-written validator refuses, naming the field:

1. `pattern` with ECMA-262 semantics (what JSON Schema specifies): `$` is the end of the input. jsonschema
   uses Python's `re.search`, whose `$` also matches before a final newline, so it accepts "abc\\n".
2. `timestamp` must be a real instant (calendar dates, hours 00-23, offsets up to 23:59, no leap second,
   years 0001-9999 also in UTC), not only match the pattern.
3. Strings and keys must be valid Unicode: no lone UTF-16 surrogate (JSON's "\\ud800" escape).
4. `data` must be storable by DynamoDB as the processor stores it: nesting, non-empty keys, numbers within
   38 digits and 1E-130..9.99E+125, the item size.

hypothesis-jsonschema 0.23.1 cannot draw objects under hypothesis 6.170, so records are composed here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator  # type: ignore[import-untyped]
from rtp_pipeline.validation import (
    MAX_DATA_BYTES,
    MAX_NESTING_LEVELS,
    _display,
    record_schema,
    validate_record,
)

from tests.tiers import examples

SCHEMA = record_schema()
DRAFT4 = Draft4Validator(SCHEMA)
PROPERTIES: dict[str, Any] = SCHEMA["properties"]
PATTERN_FIELDS = sorted(name for name, sub in PROPERTIES.items() if "pattern" in sub)


def jsonschema_fields(record: Any) -> set[str]:
    """The fields jsonschema finds at fault, named as the hand-written validator names them."""
    fields: set[str] = set()
    for error in DRAFT4.iter_errors(record):
        if error.validator == "required":
            fields.update(name for name in error.validator_value if name not in record)
        elif error.validator == "additionalProperties":
            fields.update(_display(name) for name in record if name not in PROPERTIES)
        else:
            fields.add(str(error.path[0]) if error.path else "(body)")
    return fields


def hand_written_fields(record: Any) -> set[str]:
    return {violation.field for violation in validate_record(record)}


# --- strategies: the domain where both validators apply the same rules ----------------------------------
def _matching(pattern: str) -> st.SearchStrategy[str]:
    """Strings matching a schema pattern (anchored ^...$) with ECMA-262's `$`: no trailing newline."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    return st.from_regex(pattern[1:-1], fullmatch=True)


def _sized(name: str, strings: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`strings`, and strings of the lengths around the field's limits (built by repeating a drawn one,
    which keeps these patterns' matches matching: their first class is inside the second)."""
    low, high = PROPERTIES[name].get("minLength", 0), PROPERTIES[name]["maxLength"]
    lengths = st.sampled_from(sorted({max(0, low - 1), low, high, high + 1}))

    def stretched(pair: tuple[str, int]) -> str:
        text, length = pair
        return (text * (length // max(1, len(text)) + 1))[:length]

    return strings | st.tuples(strings.filter(bool), lengths).map(stretched)


# Text that is not a near miss of the stricter rules: no lone surrogates (st.text() draws none) and no
# final newline (rule 1, asserted on its own below).
_text = st.text(max_size=140).filter(lambda s: not s.endswith("\n"))


@st.composite
def real_timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 timestamps of real instants, in every spelling the pattern allows."""
    offset = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    zone = timezone(timedelta(minutes=offset))
    moment = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))).replace(
        tzinfo=zone
    )
    separator = draw(st.sampled_from("Tt "))
    fraction = draw(st.sampled_from(["", ".5", ".123", ".123456789"]))
    if draw(st.booleans()):
        moment, suffix = moment.astimezone(UTC), draw(st.sampled_from("Zz"))
    else:
        sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
        suffix = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + fraction + suffix


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f == 0 or 1e-120 < abs(f) < 1e120)
    | st.text(max_size=20)
)
storable_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
not_an_object = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.lists(st.integers(), max_size=3)
)

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "id": _sized("id", _matching(PROPERTIES["id"]["pattern"]) | _text),
    "type": _sized("type", _matching(PROPERTIES["type"]["pattern"]) | _text),
    "source": _sized("source", _text),
    "timestamp": real_timestamps() | _text,
    "data": st.dictionaries(st.text(min_size=1, max_size=8), storable_json, max_size=5),
}
WRONG_TYPE: st.SearchStrategy[Any] = (
    st.none() | st.integers() | st.booleans() | st.lists(st.none(), max_size=2)
)


@st.composite
def candidate_records(draw: st.DrawFn) -> Any:
    """A record: each field absent, a value of its own kind (valid or not), or of the wrong JSON type;
    sometimes keys the schema does not know; sometimes not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(not_an_object)
    record: dict[str, Any] = {}
    for name, values in FIELD_VALUES.items():
        choice = draw(st.sampled_from(["absent", "value", "value", "value", "wrong type"]))
        if choice == "value":
            record[name] = draw(values)
        elif choice == "wrong type":
            record[name] = draw(not_an_object if name == "data" else WRONG_TYPE)
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.dictionaries(st.text(max_size=12), st.integers(), min_size=1, max_size=2))
        record.update({key: value for key, value in extra.items() if key not in PROPERTIES})
    return record


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidate_records())
def test_both_validators_agree_on_the_shared_rules(record: Any) -> None:
    hand_written = hand_written_fields(record)
    assert DRAFT4.is_valid(record) == (not hand_written), (record, hand_written)
    assert hand_written == jsonschema_fields(record)


def test_the_generator_reaches_both_verdicts() -> None:
    """The differential test is only as good as its mix: it draws records both validators accept, and
    records refused for a broken field, an extra key, or not being an object."""
    assert DRAFT4.is_valid(
        find(candidate_records(), lambda r: isinstance(r, dict) and len(r) >= 4 and DRAFT4.is_valid(r))
    )
    find(candidate_records(), lambda r: isinstance(r, dict) and {"id", "type"} <= jsonschema_fields(r))
    find(candidate_records(), lambda r: isinstance(r, dict) and any(k not in PROPERTIES for k in r))
    find(candidate_records(), lambda r: not isinstance(r, dict))


# --- where the hand-written validator is stricter (documented above), each on its own ----------------------
def _stricter(record: dict[str, Any], field: str) -> None:
    assert DRAFT4.is_valid(record), "jsonschema accepts this"
    assert field in hand_written_fields(record), validate_record(record)


@pytest.mark.parametrize("field", PATTERN_FIELDS)
def test_1_pattern_dollar_is_the_end_of_the_input(field: str) -> None:
    valid = {"id": "abc", "type": "abc", "timestamp": "2024-05-01T10:00:00Z"}[field]
    record = {"type": "t", "data": {}, field: valid}
    assert DRAFT4.is_valid(record) and not validate_record(record)
    _stricter({**record, field: valid + "\n"}, field)


@settings(max_examples=examples(200), deadline=None)
@given(
    _matching(PROPERTIES["timestamp"]["pattern"]).filter(
        lambda s: len(s) <= PROPERTIES["timestamp"]["maxLength"]
    )
)
def test_2_a_pattern_shaped_timestamp_must_be_a_real_instant(timestamp: str) -> None:
    """Any string of the timestamp's pattern passes jsonschema; the hand-written validator refuses it
    exactly when it is not a real instant, and then only for that reason."""
    record = {"type": "t", "data": {}, "timestamp": timestamp}
    assert DRAFT4.is_valid(record)
    problems = validate_record(record)
    assert [problem.field for problem in problems] in ([], ["timestamp"]), problems
    assert bool(problems) == (not _is_real_instant(timestamp)), (timestamp, problems)


def _is_real_instant(text: str) -> bool:
    """An independent oracle: datetime.fromisoformat on the normalised spelling, then to UTC."""
    date, time = text[:10], text[11:]
    zone_at = max(time.rfind("+"), time.rfind("-"), time.upper().rfind("Z"))
    clock, zone = time[:zone_at], time[zone_at:].upper().replace("Z", "+00:00")
    whole, _, fraction = clock.partition(".")
    if int(zone[1:3]) > 23 or int(zone[4:6]) > 59 or whole.endswith(":60") or date.startswith("0000"):
        return False
    try:
        moment = datetime.fromisoformat(
            f"{date}T{whole}{('.' + fraction[:6].ljust(6, '0')) if fraction else ''}{zone}"
        )
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return False
    return True


@pytest.mark.parametrize(
    "timestamp",
    [
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T10:60:00Z",
        "2016-12-31T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "2024-05-01T10:00:00+24:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:00:00-01:00",
    ],
)
def test_2_examples(timestamp: str) -> None:
    _stricter({"type": "t", "data": {}, "timestamp": timestamp}, "timestamp")


@pytest.mark.parametrize("field", ["id", "type", "source", "timestamp"])
def test_3_no_lone_surrogates_in_strings(field: str) -> None:
    # A surrogate cannot match the patterns, so jsonschema refuses those fields anyway: only `source`
    # (no pattern) shows the difference; the others must at least be refused.
    record = {"type": "t", "data": {}, field: "ok\ud800" if field in ("source",) else "a\ud800"}
    if field == "source":
        _stricter(record, field)
    else:
        assert field in hand_written_fields(record) and not DRAFT4.is_valid(record)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"note": "\udc00"}, "data.note"),
        ({"\ud800": 1}, "data"),
        ({"": 1}, 'data[""]'),
        ({"n": 10**40 + 1}, "data.n"),
        ({"n": 1e-200}, "data.n"),
        ({"n": 1e130}, "data.n"),
        ({"x": "y" * (MAX_DATA_BYTES + 1)}, "data"),
    ],
)
def test_4_data_must_be_storable_by_dynamodb(data: dict[str, Any], field: str) -> None:
    record = {"type": "t", "data": data}
    assert DRAFT4.is_valid(record)
    assert any(problem.field.startswith(field) for problem in validate_record(record)), validate_record(
        record
    )


def test_4_nesting_past_dynamodbs_levels() -> None:
    value: Any = 1
    for _ in range(MAX_NESTING_LEVELS):
        value = {"a": value}
    record = {"type": "t", "data": value}
    assert DRAFT4.is_valid(record)
    assert any("nests too deep" in problem.message for problem in validate_record(record))


def test_hand_written_sees_every_field_jsonschema_sees_at_once() -> None:
    """All violations per record (why it is hand-written): five broken fields, five fields named."""
    record = {"id": "-x", "type": "", "data": [], "timestamp": 7, "source": "", "extra": 1}
    assert (
        hand_written_fields(record)
        == jsonschema_fields(record)
        == {"id", "type", "data", "timestamp", "source", "extra"}
    )
