"""The sparse, sharded REJECTED index and GET /records?status=REJECTED (the query function).

Records are stored by the real storage code (`PipelineTable.store_outcomes`, or the processor), into the
template's table in moto, index included; the listing runs through the query handler or its domain
function against that table.
"""

from __future__ import annotations

import base64
import itertools
import json
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.harness import Pipeline, api_event, assert_error
from tests.tiers import examples

BASE = datetime(2026, 11, 28, 9, 58, tzinfo=UTC)


def table(pipeline: Pipeline) -> Any:
    from rtp_pipeline.aws import client
    from rtp_pipeline.storage import PipelineTable

    return PipelineTable(client("dynamodb"), pipeline.table_name)


def store(pipeline: Pipeline, records: list[tuple[str, str, datetime]], batch_id: str = "B" * 26) -> None:
    """Store (record id, status, processed at) through the storage code, one call per moment."""
    from rtp_pipeline.storage import PROCESSED, Outcome

    pipeline_table = table(pipeline)
    # Ingest's batch item, which the storage code counts on (the listing does not read it).
    pipeline.dynamodb.put_item(
        TableName=pipeline.table_name, Item={"pk": {"S": f"BATCH#{batch_id}"}, "batchId": {"S": batch_id}}
    )
    for record_id, status, at in records:
        outcome = (
            Outcome(record_id, status, "order", result={"n": 1})
            if status == PROCESSED
            else Outcome(record_id, status, "order", reason=f"bad {record_id}")
        )
        pipeline_table.store_outcomes(batch_id, [outcome], at + timedelta(days=1), at)


def listing(pipeline: Pipeline, request_id: str | None = None, **params: str) -> Any:
    event = api_event("GET", "/records", resource="/records", request_id=request_id)
    event["queryStringParameters"] = params or None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in params.items()} or None
    return pipeline.api("query", event)


def at(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def every_page(pipeline: Pipeline, limit: int, **params: str) -> list[list[dict[str, Any]]]:
    pages = []
    token = None
    while True:
        sent = {**params, "limit": str(limit), **({"next": token} if token else {})}
        response = listing(pipeline, **sent)
        assert response.status == 200, response.body
        pages.append(response.body["records"])
        token = response.body["next"]
        if token is None:
            return pages
        assert len(pages) < 200, "the listing does not end"


# --- the index keys ---------------------------------------------------------------------------------


def test_only_rejected_items_carry_the_index_keys(pipeline: Pipeline) -> None:
    from rtp_pipeline.storage import REJECTED_SHARDS

    records = [{"id": "good-1", "type": "t", "data": {"n": 1}}, {"id": "bad-1", "type": "t", "data": {}}]
    accepted = pipeline.post_records({"records": records})
    assert accepted.status == 202
    pipeline.drain()
    items = {
        item["pk"]["S"]: item
        for item in pipeline.dynamodb.scan(TableName=pipeline.table_name)["Items"]
        if item["pk"]["S"].startswith("REC#")
    }
    good, bad = items["REC#good-1"], items["REC#bad-1"]
    assert "rk" not in good and "rs" not in good
    processed_at = bad["at"]["S"]
    shard = zlib.crc32(b"bad-1") % REJECTED_SHARDS
    assert bad["rk"]["S"] == f"{processed_at[:13]}#{shard:02d}"
    assert bad["rs"]["S"] == f"{processed_at}#bad-1"
    # GET /records/{id} keeps its shape: the index keys are bookkeeping, not part of the record.
    assert not {"rk", "rs"} & set(pipeline.get_record("bad-1").body)


def test_the_index_keys_are_in_the_item_the_size_checks_see() -> None:
    """record_item (what `item_problems` measures before a write) and record_attributes (what is written)
    hold the same attributes: the index keys count towards the item's size."""
    from rtp_pipeline.storage import KEY_LIMITS, PROCESSED, REJECTED, Outcome, PipelineTable
    from rtp_pipeline.validation import dynamodb_size, item_problems

    now = BASE
    rejected = Outcome("r-1", REJECTED, "t", reason="why")
    item = PipelineTable.record_item("B" * 26, rejected, now, now)
    assert {"rk", "rs"} <= set(item) and item_problems(item, KEY_LIMITS) == []
    written = PipelineTable(None, "table").record_attributes("B" * 26, rejected, now, now)
    assert set(written) == set(item)
    processed = Outcome("p-1", PROCESSED, "t", result={"n": 1})
    assert not {"rk", "rs"} & set(PipelineTable.record_item("B" * 26, processed, now, now))
    # The names are two letters each, and the keys of the longest id stay small.
    longest = Outcome("x" * 128, REJECTED, "t", reason="why")
    keys = PipelineTable.record_item("B" * 26, longest, now, now)
    assert len("rk") + dynamodb_size(keys["rk"]) + len("rs") + dynamodb_size(keys["rs"]) < 200


def test_sixteen_shards_keep_a_rejected_flood_under_a_partitions_write_limit() -> None:
    """At 10,000 REJECTED records per second (a transform that rejects everything), every index key (one
    hour, one shard) takes fewer than 1,000 writes per second, DynamoDB's per-partition limit
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html).
    Measured on one second of real ids: the API's (`<batchId>-<index>`) and a client's sequence."""
    from rtp_pipeline.storage import (
        DESIGN_RECORDS_PER_SECOND,
        PARTITION_WRITE_UNITS_PER_SECOND,
        REJECTED_SHARDS,
        rejected_index_keys,
    )

    assert DESIGN_RECORDS_PER_SECOND / REJECTED_SHARDS <= PARTITION_WRITE_UNITS_PER_SECOND * 0.7
    second = at(BASE)
    batches = [f"01JDXQ{n:020d}"[:26] for n in range(20)]
    for ids in (
        [f"{batch}-{index}" for batch in batches for index in range(DESIGN_RECORDS_PER_SECOND // 20)],
        [f"order-{n:08d}" for n in range(DESIGN_RECORDS_PER_SECOND)],
    ):
        per_key = Counter(rejected_index_keys(record_id, second)[0] for record_id in ids)
        assert len(per_key) == REJECTED_SHARDS
        assert max(per_key.values()) < PARTITION_WRITE_UNITS_PER_SECOND, per_key.most_common(1)


def test_one_shard_would_not_keep_it() -> None:
    """The check above can fail: with the records of a second on one key, it does."""
    from rtp_pipeline.storage import DESIGN_RECORDS_PER_SECOND, PARTITION_WRITE_UNITS_PER_SECOND

    per_key = Counter(f"{at(BASE)[:13]}" for _ in range(DESIGN_RECORDS_PER_SECOND))
    assert max(per_key.values()) >= PARTITION_WRITE_UNITS_PER_SECOND


def test_a_typical_index_entry_is_one_write_unit() -> None:
    """An index write is metered on the entry's size: keys, projected b, t, e and 100 bytes
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.ThroughputConsiderations).
    A schema rejection of the longest id and type stays within 1 KB."""
    from rtp_pipeline.storage import REJECTED, Outcome, PipelineTable
    from rtp_pipeline.validation import dynamodb_size

    reason = "schema: records[499].data must be an object with at least one property; " * 4
    outcome = Outcome("x" * 128, REJECTED, "t" * 64, reason=reason[:300])
    item = PipelineTable.record_item("B" * 26, outcome, BASE, BASE)
    entry = {name: item[name] for name in ("pk", "rk", "rs", "b", "t", "e")}
    size = sum(len(name) + dynamodb_size(value) for name, value in entry.items()) + 100
    assert size <= 1024, size


# --- listing ---------------------------------------------------------------------------------------


def test_listing_merges_shards_and_hours_in_order_with_paging(pipeline: Pipeline) -> None:
    from rtp_pipeline.storage import PROCESSED, REJECTED, REJECTED_SHARDS, rejected_index_keys

    moments = [BASE + timedelta(minutes=7 * n, milliseconds=n) for n in range(40)]  # 09:58 to 14:31
    rejected = [(f"rec-{n:03d}", REJECTED, moment) for n, moment in enumerate(moments)]
    processed = [(f"ok-{n:03d}", PROCESSED, moment) for n, moment in enumerate(moments[::3])]
    store(pipeline, rejected + processed)
    shards = {rejected_index_keys(record_id, at(moment))[0][-2:] for record_id, _, moment in rejected}
    assert len(shards) > REJECTED_SHARDS // 2  # the records really are spread

    window = {"status": REJECTED, "since": "2026-11-28T10:00:00Z", "until": "2026-11-28T14:00:00.000Z"}
    low, high = "2026-11-28T10:00:00.000Z", window["until"]
    expected = [(record_id, at(moment)) for record_id, _, moment in rejected if low <= at(moment) <= high]
    for order, wanted in (("newest", expected[::-1]), ("oldest", expected)):
        for limit in (4, 13, 100):
            pages = every_page(pipeline, limit, **window, order=order)
            assert all(len(page) <= limit for page in pages)
            rows = [row for page in pages for row in page]
            assert [(row["recordId"], row["processedAt"]) for row in rows] == wanted, (order, limit)
    row = rows[0]
    assert row == {
        "recordId": row["recordId"],
        "batchId": "B" * 26,
        "status": REJECTED,
        "type": "order",
        "processedAt": row["processedAt"],
        "reason": f"bad {row['recordId']}",
    }


def test_the_route_answers_with_the_window_and_a_token(pipeline: Pipeline) -> None:
    now = datetime.now(UTC)
    store(pipeline, [(f"r-{n}", "REJECTED", now - timedelta(minutes=n)) for n in range(3)])
    store(pipeline, [("old", "REJECTED", now - timedelta(hours=2))])
    first = listing(pipeline, status="REJECTED", since="1h", limit="2")
    assert first.status == 200 and first.headers["content-type"] == "application/json"
    assert [row["recordId"] for row in first.body["records"]] == ["r-0", "r-1"]
    assert first.body["order"] == "newest" and first.body["since"] < first.body["until"]
    second = listing(pipeline, status="REJECTED", since="1h", limit="2", next=first.body["next"])
    assert [row["recordId"] for row in second.body["records"]] == ["r-2"]
    assert second.body["next"] is None
    # The token carries its window: the second page is the first page's window, not a new `1h`.
    assert (second.body["since"], second.body["until"]) == (first.body["since"], first.body["until"])
    everything = listing(pipeline, status="REJECTED", since="3h").body["records"]
    assert [row["recordId"] for row in everything] == ["r-0", "r-1", "r-2", "old"]


def test_an_empty_window_longer_than_a_request_may_scan_is_paged(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtp_pipeline import query

    monkeypatch.setattr(query, "HOURS_PER_REQUEST", 3)  # 48 in service: the same rule, fewer Queries
    store(pipeline, [("early", "REJECTED", BASE - timedelta(hours=7))])
    since, until = at(BASE - timedelta(hours=7, minutes=30)), at(BASE)  # hours 02 to 09: eight
    first = listing(pipeline, status="REJECTED", since=since, until=until, order="newest")
    assert first.status == 200 and first.body["records"] == [] and first.body["next"]
    pages = every_page(pipeline, 10, status="REJECTED", since=since, until=until)
    assert [row["recordId"] for page in pages for row in page] == ["early"]
    assert len(pages) == 3  # 8 hours, 3 per request


ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
_day = itertools.count()


@settings(
    max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.dictionaries(
        ID, st.tuples(st.booleans(), st.integers(0, 3 * 3600 * 1000 - 1)), min_size=0, max_size=30
    ),
    limit=st.integers(1, 12),
    newest_first=st.booleans(),
    window=st.tuples(st.integers(0, 3 * 3600 * 1000), st.integers(0, 3 * 3600 * 1000)),
)
def test_every_rejected_record_appears_exactly_once_across_pages(
    pipeline: Pipeline,
    records: dict[str, tuple[bool, int]],
    limit: int,
    newest_first: bool,
    window: tuple[int, int],
) -> None:
    from rtp_pipeline.query import rejected_listing

    day = BASE + timedelta(days=next(_day))  # each example its own day: examples share the table
    suffix = f"-{day:%m%d}"
    stored = {
        record_id + suffix: ("REJECTED" if rejected else "PROCESSED", day + timedelta(milliseconds=offset))
        for record_id, (rejected, offset) in records.items()
    }
    store(pipeline, [(record_id, status, moment) for record_id, (status, moment) in stored.items()])
    since, until = (day + timedelta(milliseconds=bound) for bound in sorted(window))
    expected = sorted(
        (
            (at(moment), record_id)
            for record_id, (status, moment) in stored.items()
            if status == "REJECTED" and at(since) <= at(moment) <= at(until)
        ),
        reverse=newest_first,
    )
    params = {
        "status": "REJECTED",
        "since": at(since),
        "until": at(until),
        "order": "newest" if newest_first else "oldest",
        "limit": str(limit),
    }
    seen: list[tuple[str, str]] = []
    for _ in range(100):
        page = rejected_listing(table(pipeline), params, datetime.now(UTC))
        assert len(page["records"]) <= limit
        seen.extend((row["processedAt"], row["recordId"]) for row in page["records"])
        if page["next"] is None:
            break
        params["next"] = page["next"]
    assert seen == expected


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"status": "PROCESSED", "since": "1h"}, "status", "not indexed, by design"),
        ({"status": "rejected", "since": "1h"}, "status", "REJECTED is the one status"),
        ({"since": "1h"}, "status", "REJECTED is the one status"),
        ({"status": "REJECTED"}, "since", "required"),
        ({"status": "REJECTED", "since": "yesterday"}, "since", "neither an RFC 3339 time"),
        ({"status": "REJECTED", "since": "1w"}, "since", "s, m, h or d"),
        ({"status": "REJECTED", "since": "2026-11-28T10:00:00"}, "since", "RFC 3339"),  # no time zone
        ({"status": "REJECTED", "since": "2026-02-30T10:00:00Z"}, "since", "RFC 3339"),
        ({"status": "REJECTED", "since": "1h", "until": "2h"}, "since", "not be after until"),
        ({"status": "REJECTED", "since": "500d"}, "since", "at most 400 days"),
        ({"status": "REJECTED", "since": "999999d"}, "since", "before the year 1"),  # no 500
        ({"status": "REJECTED", "since": "1h", "limit": "0"}, "limit", "1 to 1000"),
        ({"status": "REJECTED", "since": "1h", "limit": "1001"}, "limit", "1 to 1000"),
        ({"status": "REJECTED", "since": "1h", "limit": "ten"}, "limit", "1 to 1000"),
        ({"status": "REJECTED", "since": "1h", "order": "random"}, "order", "newest"),
    ],
)
def test_bad_parameters_are_400s_that_say_why(params: dict[str, str], field: str, words: str) -> None:
    from rtp_pipeline.errors import ApiError
    from rtp_pipeline.query import rejected_listing

    with pytest.raises(ApiError) as refused:
        rejected_listing(None, params, datetime.now(UTC))  # type: ignore[arg-type]  # refused before reading
    assert refused.value.status == 400 and refused.value.code == "BAD_REQUEST"
    assert words in refused.value.message
    assert refused.value.details[0]["field"] == field


def test_the_route_answers_bad_parameters_in_the_error_shape(pipeline: Pipeline) -> None:
    response = listing(pipeline, request_id="q-9", status="PROCESSED", since="1h")
    assert_error(response, 400, "BAD_REQUEST", "q-9")
    assert "not indexed, by design" in response.body["error"]["message"]
    response = listing(pipeline, request_id="q-t", status="REJECTED", since="1h", next="not a token")
    assert_error(response, 400, "BAD_REQUEST", "q-t")
    assert response.body["error"]["details"][0]["field"] == "next"


def _token(document: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


GOOD = {
    "v": 1,
    "s": "2026-11-28T10:00:00.000Z",
    "u": "2026-11-28T12:00:00.000Z",
    "o": "newest",
    "h": "2026-11-28T11",
    "a": "2026-11-28T11:30:00.000Z#r-1",
}


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        "%%%",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _token("a string"),
        _token([1, 2]),
        _token({**GOOD, "v": 2}),
        _token({**GOOD, "extra": 1}),
        _token({key: value for key, value in GOOD.items() if key != "a"}),
        _token({**GOOD, "o": "sideways"}),
        _token({**GOOD, "s": "2026-11-28T13:00:00.000Z"}),  # since after until
        _token({**GOOD, "s": "2026-13-28T10:00:00.000Z"}),  # no such month
        _token({**GOOD, "h": "2026-11-28T09"}),  # an hour outside the window
        _token({**GOOD, "a": "2026-11-28T10:30:00.000Z#r-1"}),  # a position outside its hour
        _token({**GOOD, "h": "2026-11-28T12", "a": "2026-11-28T12:30:00.000Z#r-1"}),  # after until
        _token({**GOOD, "a": "2026-11-28T11:30:00.000Z#r 1"}),  # not an id
        _token({**GOOD, "a": 5}),
        _token({**GOOD, "s": None}),
        "A" * 2000,
    ],
)
def test_a_bad_token_is_a_400_not_a_500(token: str) -> None:
    from rtp_pipeline.errors import ApiError
    from rtp_pipeline.query import rejected_listing

    params = {"status": "REJECTED", "since": "1h", "next": token}
    with pytest.raises(ApiError) as refused:
        rejected_listing(None, params, datetime.now(UTC))  # type: ignore[arg-type]  # refused before reading
    assert refused.value.status == 400 and refused.value.details[0]["field"] == "next"


def test_the_good_token_of_the_table_above_is_accepted(pipeline: Pipeline) -> None:
    """The refusals above are each about their one change: the token they start from is valid."""
    response = listing(pipeline, status="REJECTED", since="1h", next=_token(GOOD))
    assert response.status == 200 and response.body["since"] == GOOD["s"]


@settings(max_examples=examples(60), deadline=None)
@given(token=st.text(min_size=1, max_size=300) | st.binary(max_size=200).map(lambda raw: _token(raw.hex())))
def test_any_token_is_an_answer_never_a_fault(token: str) -> None:
    """Tokens come from outside: whatever arrives is either a position or a 400, never an exception."""
    from rtp_pipeline.errors import ApiError
    from rtp_pipeline.query import decode_token

    try:
        decode_token(token)
    except ApiError as error:
        assert error.status == 400


def test_a_token_round_trips() -> None:
    from rtp_pipeline.query import Position, Window, decode_token, encode_token

    window = Window("2026-11-28T10:00:00.000Z", "2026-11-28T12:00:00.000Z", newest_first=False)
    positions = (Position("2026-11-28T11", None), Position("2026-11-28T11", "2026-11-28T11:00:00.001Z#a"))
    for position in positions:
        assert decode_token(encode_token(window, position)) == (window, position)
