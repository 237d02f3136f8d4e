"""PipelineTable on its own: exactly-once storage and per-chunk counting, refusals, compression, costs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws
from rtp_pipeline.storage import (
    BATCH_WRITE_ATTEMPTS,
    COMPRESS_MIN_BYTES,
    PROCESSED,
    REJECTED,
    Outcome,
    PipelineTable,
    Stored,
    deserialize,
)

from rtp_cli.local.partiql import parse_insert
from tests.handlers.harness import REGION

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class CountingClient:
    """The real (moto) DynamoDB client, counting PutItem, UpdateItem and PartiQL INSERT calls."""

    def __init__(self, client: Any) -> None:
        self._client, self.puts, self.updates, self.batch_writes = client, 0, 0, 0
        self.statement_calls, self.inserts = 0, 0  # BatchExecuteStatement calls, INSERT statements in them
        self.unprocessed: list[int] = []  # per BatchWriteItem call: how many items to leave unprocessed

    def batch_write_item(self, **kwargs: Any) -> Any:
        self.batch_writes += 1
        left = self.unprocessed.pop(0) if self.unprocessed else 0
        [(name, requests)] = kwargs["RequestItems"].items()
        done = self._client.batch_write_item(RequestItems={name: requests[left:]}) if requests[left:] else {}
        if left:  # as a throttled partition answers: these were not written, send them again
            done["UnprocessedItems"] = {name: requests[:left]}
        return done

    def put_item(self, **kwargs: Any) -> Any:
        self.puts += 1
        return self._client.put_item(**kwargs)

    def batch_execute_statement(self, **kwargs: Any) -> Any:
        self.statement_calls += 1
        self.inserts += len(kwargs["Statements"])
        return self._client.batch_execute_statement(**kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        self.updates += 1
        return self._client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def table() -> Iterator[tuple[PipelineTable, CountingClient]]:
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for batch_id in ("b1", "b2"):  # ingest writes a batch's item before its records are processed
            db.put_item(
                TableName="t",
                Item={"pk": {"S": f"BATCH#{batch_id}"}, "batchId": {"S": batch_id}, "accepted": {"N": "0"}},
            )
        counting = CountingClient(db)
        yield PipelineTable(counting, "t"), counting


def outcomes(count: int, prefix: str = "r") -> list[Outcome]:
    return [
        Outcome(f"{prefix}{n}", REJECTED if n % 10 == 0 else PROCESSED, "t", result={"n": n})
        for n in range(count)
    ]


def counters(table: PipelineTable, batch_id: str) -> dict[str, int]:
    batch = table.get_batch(batch_id) or {}
    return {key: batch.get(key, 0) for key in ("processed", "rejected", "duplicates")}


def test_records_a_client_named_are_inserted_25_a_call_and_counted_once_per_chunk(table: Any) -> None:
    pipeline, client = table
    stored = pipeline.store_outcomes("b1", outcomes(250), NOW, NOW)
    assert len(stored) == 250 and client.puts == 0 and client.updates == 3  # chunks of 100, 100, 50
    assert (client.inserts, client.statement_calls) == (250, 4 + 4 + 2)  # 25 INSERTs a call per chunk
    assert counters(pipeline, "b1") == {"processed": 225, "rejected": 25, "duplicates": 0}
    assert pipeline.get_batch("b1")["cc"] == [0, 1, 2]


def test_counting_a_batch_whose_item_is_gone_raises_and_creates_nothing(table: Any) -> None:
    """A batch item expired (TTL) while its message was still redelivered: the count must not recreate
    the batch as an item holding only counters."""
    pipeline, _ = table
    with pytest.raises(RuntimeError, match="no batch item"):
        pipeline.store_outcomes("gone", outcomes(3), NOW, NOW)
    assert pipeline.get_batch("gone") is None


def test_a_redelivery_counts_each_chunk_once_from_what_is_stored(table: Any) -> None:
    """The first delivery died midway: chunk 0 stored and counted, chunk 1 stored in part and not counted
    (a record of it was not done). The redelivery reads what is stored, puts the rest, counts chunk 1 from
    the stored items and chunk 0 not again."""
    pipeline, client = table
    every = outcomes(150)
    pipeline.store_chunk("b1", 0, every[:100], {}, True, NOW, NOW)
    pipeline.store_chunk("b1", 1, every[100:120], {}, False, NOW, NOW)
    assert counters(pipeline, "b1") == {"processed": 90, "rejected": 10, "duplicates": 0}

    known = pipeline.stored_records([o.record_id for o in every])
    assert len(known) == 120 and known["r100"] == Stored("b1", REJECTED)
    client.puts = client.inserts = 0
    for chunk, start in enumerate((0, 100)):
        part = every[start : start + 100]
        todo = [o for o in part if o.record_id not in known]
        seen = {o.record_id: known[o.record_id] for o in part if o.record_id in known}
        pipeline.store_chunk("b1", chunk, todo, seen, True, NOW, NOW)
    assert (client.inserts, client.puts) == (30, 0)  # only the records not stored yet
    assert counters(pipeline, "b1") == {"processed": 135, "rejected": 15, "duplicates": 0}


def test_a_crash_between_the_puts_and_the_counter_update_is_repaired_by_the_redelivery(table: Any) -> None:
    pipeline, client = table

    class CrashingOnCount(CountingClient):
        def update_item(self, **kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "gone"}}, "UpdateItem")

    pipeline.db = CrashingOnCount(client._client)
    with pytest.raises(ClientError, match="gone"):
        pipeline.store_outcomes("b1", outcomes(20), NOW, NOW)
    assert counters(pipeline, "b1") == {"processed": 0, "rejected": 0, "duplicates": 0}

    pipeline.db = client
    for _ in range(2):  # redelivered twice: counted once
        known = pipeline.stored_records([f"r{n}" for n in range(20)])
        written = pipeline.store_chunk("b1", 0, [], known, True, NOW, NOW)
        assert written.stored == []
    assert counters(pipeline, "b1") == {"processed": 18, "rejected": 2, "duplicates": 0}


def test_a_record_the_read_missed_is_counted_from_its_refused_put(table: Any) -> None:
    """BatchGetItem is eventually consistent: a record it misses is put again, refused, and the refused
    put's ALL_OLD item (not this delivery's outcome) says what is stored."""
    pipeline, _ = table
    pipeline.store_chunk("b1", 0, [Outcome("a", REJECTED, "t", reason="no")], {}, False, NOW, NOW)
    written = pipeline.store_chunk("b1", 0, processed(["a", "b"]), {}, True, NOW, NOW)
    assert [o.record_id for o in written.stored] == ["b"]
    assert written.settled == {"a": Stored("b1", REJECTED), "b": Stored("b1", PROCESSED)}
    assert counters(pipeline, "b1") == {"processed": 1, "rejected": 1, "duplicates": 0}


def test_ids_stored_by_another_batch_are_counted_as_duplicates_once(table: Any) -> None:
    pipeline, _ = table
    pipeline.store_outcomes("b1", outcomes(5), NOW, NOW)
    for _ in range(2):  # the second batch, delivered twice
        pipeline.store_outcomes("b2", outcomes(5) + outcomes(3, prefix="new"), NOW, NOW)
    assert counters(pipeline, "b2") == {"processed": 2, "rejected": 1, "duplicates": 5}  # new0 is REJECTED
    assert pipeline.get_record("r1")["batchId"] == "b1"  # the first record wins


# --- a record's content never fails its neighbours --------------------------------------------------
class RefusingClient(CountingClient):
    """Like DynamoDB refusing items for their content: a put of an item `refuses` picks is answered as
    DynamoDB answers (`mode`): "request" (ValidationException) or "params" (botocore's client-side
    ParamValidationError). Other calls go to moto."""

    def __init__(self, client: Any, refuses: Callable[[dict[str, Any]], bool], mode: str) -> None:
        super().__init__(client)
        self.refuses, self.mode = refuses, mode

    def put_item(self, **kwargs: Any) -> Any:
        if not self.refuses(deserialize(kwargs["Item"])):
            return super().put_item(**kwargs)
        self.puts += 1
        if self.mode == "params":
            raise ParamValidationError(report="Invalid type for parameter Item.r")
        error: Any = {"Error": {"Code": "ValidationException", "Message": "Nesting Levels have exceeded"}}
        raise ClientError(error, "PutItem")

    def batch_execute_statement(self, **kwargs: Any) -> Any:
        """An INSERT of a refused item: botocore refuses the whole call ("params"), or DynamoDB answers
        that statement with ValidationError and runs the others ("request")."""
        statements = kwargs["Statements"]
        refused = [self.refuses(deserialize(_inserted(s))) for s in statements]
        if not any(refused):
            return super().batch_execute_statement(**kwargs)
        self.statement_calls += 1
        self.inserts += len(statements)
        if self.mode == "params":
            raise ParamValidationError(report="Invalid type for parameter Statements[0].Parameters[7]")
        if self.mode == "call":  # DynamoDB refusing the whole request for one item
            error: Any = {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded"}}
            raise ClientError(error, "BatchExecuteStatement")
        answers = []
        for statement, refuse in zip(statements, refused, strict=True):
            if refuse:
                answers.append(
                    {"Error": {"Code": "ValidationError", "Message": "Nesting Levels have exceeded"}}
                )
            else:
                answers.extend(self._client.batch_execute_statement(Statements=[statement])["Responses"])
        return {"Responses": answers}


def _inserted(statement: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_insert(statement["Statement"], statement["Parameters"])
    assert parsed is not None
    return parsed[1]


def processed(ids: list[str]) -> list[Outcome]:
    return [Outcome(i, PROCESSED, "t", result={"id": i}) for i in ids]


@pytest.mark.parametrize("mode", ["request", "params", "call"])
def test_an_item_dynamodb_refuses_is_stored_rejected_and_the_rest_is_written(table: Any, mode: str) -> None:
    pipeline, client = table
    refusing = RefusingClient(client._client, lambda item: item["pk"] == "REC#bad" and "r" in item, mode)
    pipeline.db, pipeline.compress = refusing, False
    ids = ["a", "bad", "c", "d"]

    stored = pipeline.store_outcomes("b1", processed(ids), NOW, NOW)

    assert [(o.record_id, o.status) for o in stored] == [
        ("a", PROCESSED),
        ("bad", REJECTED),
        ("c", PROCESSED),
        ("d", PROCESSED),
    ]
    bad = pipeline.get_record("bad")
    assert bad["status"] == REJECTED and "result" not in bad
    assert bad["reason"].startswith("DynamoDB cannot store the result")
    assert counters(pipeline, "b1") == {"processed": 3, "rejected": 1, "duplicates": 0}
    if mode == "request":  # 4 INSERTs, "bad" refused; then its put, refused, and its REJECTED stand-in
        assert (refusing.inserts, refusing.puts) == (len(ids), 2)
    else:  # the whole call refused (by botocore, or DynamoDB): a put each, and the stand-in of "bad"
        assert (refusing.inserts, refusing.puts) == (len(ids), len(ids) + 1)
    again = pipeline.store_outcomes("b1", processed(ids), NOW, NOW)  # redelivered: nothing new
    assert again == [] and counters(pipeline, "b1") == {"processed": 3, "rejected": 1, "duplicates": 0}


def test_moto_refusals_of_real_items_are_isolated_too(table: Any) -> None:
    """Without injection: items moto (like DynamoDB) refuses, too large or with a number out of range."""
    pipeline, _ = table
    pipeline.compress = False  # compressed, the 410 KB string would fit
    outcomes = [
        *processed(["a"]),
        Outcome("huge", PROCESSED, "t", result={"s": "x" * 410_000}),
        Outcome("tiny", PROCESSED, "t", result={"n": Decimal("1E-131")}),
        *processed(["b"]),
    ]
    stored = pipeline.store_outcomes("b1", outcomes, NOW, NOW)
    assert {o.record_id: o.status for o in stored} == {
        "a": PROCESSED,
        "huge": REJECTED,
        "tiny": REJECTED,
        "b": PROCESSED,
    }
    assert "Item size" in pipeline.get_record("huge")["reason"]
    assert counters(pipeline, "b1") == {"processed": 2, "rejected": 2, "duplicates": 0}


def test_an_unserializable_result_is_rejected_before_writing(table: Any) -> None:
    pipeline, client = table
    stored = pipeline.store_outcomes("b1", [Outcome("o", PROCESSED, "t", result={"x": object()})], NOW, NOW)
    assert [o.status for o in stored] == [REJECTED] and "TypeError" in (stored[0].reason or "")
    assert client.puts == 1


def test_a_refused_rejected_record_or_a_throttle_fails_loudly(table: Any, monkeypatch: Any) -> None:
    """Not content: the REJECTED stand-in itself refused, or throttling. SQS must retry; nothing counted."""
    pipeline, client = table
    pipeline.db = RefusingClient(client._client, lambda item: item["pk"] == "REC#bad", "request")
    with pytest.raises(RuntimeError, match="DynamoDB refused the REJECTED record bad"):
        pipeline.store_outcomes("b1", processed(["bad"]), NOW, NOW)

    class Throttled(CountingClient):
        def put_item(self, **kwargs: Any) -> Any:
            error: Any = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, "PutItem")

        def batch_execute_statement(self, **kwargs: Any) -> Any:
            self.statement_calls += 1
            return {"Responses": [{"Error": {"Code": "ThrottlingError"}} for _ in kwargs["Statements"]]}

    pipeline.db = Throttled(client._client)
    with pytest.raises(ClientError, match="slow down"):
        pipeline.store_outcomes("b2", processed(["x"]), NOW, NOW)  # one record: one PutItem
    monkeypatch.setattr("rtp_pipeline.storage._backoff", lambda retry: 0.0)
    with pytest.raises(RuntimeError, match=r"left 2 record\(s\) of batch b2 unwritten \(throttled\)"):
        pipeline.store_outcomes("b2", processed(["x", "y"]), NOW, NOW)  # sent again, then given up
    assert pipeline.db.statement_calls == BATCH_WRITE_ATTEMPTS
    pipeline.db = client
    assert pipeline.get_record("x") is None and counters(pipeline, "b2")["processed"] == 0


def test_reasons_and_types_are_stored_readable_and_bounded(table: Any) -> None:
    pipeline, _ = table
    pipeline.store_outcomes(
        "b1", [Outcome("r", REJECTED, "t\ud800" * 300, reason="bad \udc00 value " + "y" * 5000)], NOW, NOW
    )
    item = pipeline.get_record("r")
    assert item["reason"].startswith("bad \\udc00 value") and len(item["reason"]) == 2000
    assert item["type"].startswith("t\\ud800") and len(item["type"]) == 200


def test_stored_records_reads_in_pages_of_100(table: Any) -> None:
    pipeline, _ = table
    pipeline.store_outcomes("b1", outcomes(150), NOW, NOW)
    pipeline.store_outcomes("b2", outcomes(3, prefix="x"), NOW, NOW)
    found = pipeline.stored_records([f"r{n}" for n in range(140, 160)] + ["x1", "missing", "x1"])
    assert found == {
        **{f"r{n}": Stored("b1", REJECTED if n % 10 == 0 else PROCESSED) for n in range(140, 150)},
        "x1": Stored("b2", PROCESSED),
    }


# --- the item: compact, compressed when that pays -------------------------------------------------
def _raw(client: Any, record_id: str) -> dict[str, Any]:
    item: dict[str, Any] = client._client.get_item(TableName="t", Key={"pk": {"S": f"REC#{record_id}"}})[
        "Item"
    ]
    return item


def test_large_results_are_stored_compressed_and_read_back_unchanged(table: Any) -> None:
    pipeline, client = table
    result = {"data": {"text": "reading " * 150, "celsius": 21.5, "n": 10**40, "deep": [{"a": [1, 2.5]}]}}
    small = {"n": 1}
    pipeline.store_outcomes("b1", [Outcome("big", PROCESSED, "t", result=result)], NOW, NOW)
    pipeline.store_outcomes("b2", [Outcome("small", PROCESSED, "t", result=small)], NOW, NOW)
    big = _raw(client, "big")
    assert set(big) == {"pk", "b", "s", "t", "at", "expiresAt", "z"} and len(big["z"]["B"]) < 200
    assert set(_raw(client, "small")) == {"pk", "b", "s", "t", "at", "expiresAt", "r"}  # too small to pay
    assert len('{"n":1}') < COMPRESS_MIN_BYTES
    assert pipeline.get_record("big")["result"] == result
    assert pipeline.get_record("small") == {
        "recordId": "small",
        "batchId": "b2",
        "status": PROCESSED,
        "type": "t",
        "processedAt": "2026-11-22T12:00:00.000Z",
        "expiresAt": int(NOW.timestamp()),
        "result": small,
    }


def test_compression_can_be_turned_off(table: Any) -> None:
    pipeline, client = table
    pipeline.compress = False
    result = {"text": "reading " * 150}
    pipeline.store_outcomes("b1", [Outcome("big", PROCESSED, "t", result=result)], NOW, NOW)
    assert "r" in _raw(client, "big") and "z" not in _raw(client, "big")
    assert pipeline.get_record("big")["result"] == result


# --- records the API named: BatchWriteItem under a chunk lease -------------------------------------------
BATCH = "01KBATCH0000000000000000AA"


def owned(count: int, batch_id: str = BATCH) -> list[Outcome]:
    """Outcomes of records without a client id: `<batchId>-<index>`, every tenth REJECTED."""
    return [
        Outcome(f"{batch_id}-{n}", REJECTED if n % 10 == 0 else PROCESSED, "t", result={"n": n})
        for n in range(count)
    ]


def new_batch(pipeline: PipelineTable, batch_id: str = BATCH) -> None:
    db = getattr(pipeline.db, "_client", pipeline.db)  # not counted: ingest writes the batch item
    db.put_item(
        TableName="t",
        Item={"pk": {"S": f"BATCH#{batch_id}"}, "batchId": {"S": batch_id}, "accepted": {"N": "0"}},
    )


def lease(pipeline: PipelineTable, chunk: int, seconds: float = 60, batch_id: str = BATCH) -> int | str:
    now = datetime.now(UTC)
    return pipeline.lease_chunk(batch_id, chunk, now, now + timedelta(seconds=seconds))


def test_a_leased_chunk_is_written_25_records_a_call_and_counted_once(table: Any) -> None:
    pipeline, client = table
    new_batch(pipeline)
    token = lease(pipeline, 0)
    assert isinstance(token, int)
    written = pipeline.store_chunk(BATCH, 0, owned(100), {}, True, NOW, NOW, token)
    assert len(written.stored) == 100
    assert (client.batch_writes, client.puts) == (4, 0)  # 100 records: 4 BatchWriteItem calls, no PutItem
    assert counters(pipeline, BATCH) == {"processed": 90, "rejected": 10, "duplicates": 0}
    assert "l0" not in (pipeline.get_batch(BATCH) or {})  # the count gave the lease back
    assert lease(pipeline, 0) == "counted"
    assert pipeline.get_record(f"{BATCH}-7")["result"] == {"n": 7}


def test_a_held_lease_keeps_other_deliveries_out_until_it_runs_out(table: Any) -> None:
    pipeline, _ = table
    new_batch(pipeline)
    first = lease(pipeline, 0, seconds=60)
    assert isinstance(first, int) and lease(pipeline, 0) == "busy"
    assert isinstance(lease(pipeline, 1), int)  # leases are per chunk
    # A delivery that crashed holding chunk 2 (its lease already over): the next one takes it over, and
    # the crashed one can no longer count.
    stale = lease(pipeline, 2, seconds=-1)
    assert isinstance(stale, int)
    taken = lease(pipeline, 2)
    assert isinstance(taken, int) and taken != stale
    with pytest.raises(RuntimeError, match="lease l2 ran out"):
        pipeline.store_chunk(BATCH, 2, owned(10), {}, True, NOW, NOW, stale)
    pipeline.store_chunk(BATCH, 2, owned(10), {}, True, NOW, NOW, taken)
    assert counters(pipeline, BATCH)["processed"] == 9
    # Given back early (the delivery stopped without counting): the next delivery need not wait.
    pipeline.release_chunk(BATCH, 0, first)
    assert isinstance(lease(pipeline, 0), int)


def test_a_lease_needs_the_batch_item(table: Any) -> None:
    pipeline, _ = table
    with pytest.raises(RuntimeError, match="no batch item"):
        lease(pipeline, 0, batch_id="01KNOBATCH0000000000000000")


def test_unprocessed_items_are_sent_again_and_a_lasting_throttle_fails_loudly(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, client = table
    monkeypatch.setattr("time.sleep", lambda _: None)
    # The resend's sleep is bound when the method is defined (`sleep=time.sleep`): no backoff, no wait.
    monkeypatch.setattr("rtp_pipeline.storage._backoff", lambda retry: 0.0)
    new_batch(pipeline)
    client.unprocessed = [10, 3]  # the first call leaves 10 unwritten, their resend 3
    token = lease(pipeline, 0)
    assert isinstance(token, int)
    pipeline.store_chunk(BATCH, 0, owned(25), {}, True, NOW, NOW, token)
    assert client.batch_writes == 3
    assert counters(pipeline, BATCH)["processed"] == 22
    assert all(pipeline.get_record(f"{BATCH}-{n}") for n in range(25))

    client.unprocessed = [1] * BATCH_WRITE_ATTEMPTS
    token = lease(pipeline, 1)
    assert isinstance(token, int)
    with pytest.raises(RuntimeError, match=r"1 record.*unwritten"):
        pipeline.store_chunk(BATCH, 1, owned(125)[100:], {}, True, NOW, NOW, token)
    assert counters(pipeline, BATCH)["processed"] == 22  # chunk 1 not counted: the redelivery will


def test_a_batch_dynamodb_refuses_for_one_item_is_written_one_put_at_a_time(table: Any) -> None:
    """BatchWriteItem refuses the whole call for one item's content: the group is redone with conditional
    puts, so only that record becomes REJECTED (and puts refused by their condition find what an earlier
    delivery of the same message stored)."""
    pipeline, client = table
    pipeline.compress = False  # compressed, the 410 KB string would fit
    new_batch(pipeline)
    records = owned(25)
    records[3] = Outcome(records[3].record_id, PROCESSED, "t", result={"s": "x" * 410_000})
    pipeline.store_chunk(BATCH, 0, records[:2], {}, False, NOW, NOW)  # an earlier, crashed delivery
    token = lease(pipeline, 0)
    assert isinstance(token, int)
    client.puts = client.inserts = 0
    pipeline.store_chunk(BATCH, 0, records, {}, True, NOW, NOW, token)  # its read missed those two
    assert client.batch_writes == 1 and client.puts == 26  # 25 records, and the refused one's stand-in
    assert "Item size" in pipeline.get_record(f"{BATCH}-3")["reason"]
    assert counters(pipeline, BATCH) == {"processed": 21, "rejected": 4, "duplicates": 0}


# --- records a client named: INSERTs, 25 a BatchExecuteStatement -----------------------------------------
class Flaky(CountingClient):
    """Answers chosen statements of the next calls with an error (and does not run them)."""

    def __init__(self, client: Any, errors: list[dict[int, str]], strip_item: bool = False) -> None:
        super().__init__(client)
        self.errors, self.strip_item = errors, strip_item

    def batch_execute_statement(self, **kwargs: Any) -> Any:
        failing = self.errors.pop(0) if self.errors else {}
        statements = kwargs["Statements"]
        self.statement_calls += 1
        self.inserts += len(statements)
        answers: list[dict[str, Any]] = []
        for position, statement in enumerate(statements):
            if position in failing:
                answers.append({"Error": {"Code": failing[position], "Message": "try again"}})
            else:
                [answer] = self._client.batch_execute_statement(Statements=[statement])["Responses"]
                if self.strip_item:
                    answer.get("Error", {}).pop("Item", None)
                answers.append(answer)
        return {"Responses": answers}


def test_statements_throttled_or_failed_in_the_service_alone_are_sent_again(
    table: Any, monkeypatch: Any
) -> None:
    pipeline, client = table
    monkeypatch.setattr("rtp_pipeline.storage._backoff", lambda retry: 0.0)
    flaky = Flaky(
        client._client,
        [{1: "ThrottlingError", 3: "InternalServerError"}, {0: "TransactionConflict"}],
    )
    pipeline.db = flaky
    stored = pipeline.store_outcomes("b1", processed(["a", "b", "c", "d"]), NOW, NOW)
    assert [o.record_id for o in stored] == ["a", "b", "c", "d"]  # each stored once, reported once
    assert (flaky.statement_calls, flaky.inserts, flaky.puts) == (3, 4 + 2 + 1, 0)
    assert counters(pipeline, "b1") == {"processed": 4, "rejected": 0, "duplicates": 0}


def test_a_duplicate_insert_is_settled_by_its_stored_item_without_another_write(table: Any) -> None:
    pipeline, client = table
    pipeline.store_outcomes("b1", processed(["a", "b"]), NOW, NOW)
    client.puts = client.inserts = 0
    pipeline.store_outcomes("b2", processed(["a", "new", "b"]), NOW, NOW)
    assert (client.inserts, client.puts) == (3, 0)  # ALL_OLD came with both refusals
    assert counters(pipeline, "b2") == {"processed": 1, "rejected": 0, "duplicates": 2}


def test_a_duplicate_answered_without_the_stored_item_is_settled_by_a_conditional_put(table: Any) -> None:
    """The API reference does not say a DuplicateItem carries ALL_OLD's item: without it, the record is
    settled as before, by a PutItem whose refused condition returns the stored item."""
    pipeline, client = table
    pipeline.store_outcomes("b1", processed(["a", "b"]), NOW, NOW)
    bare = Flaky(client._client, [], strip_item=True)
    pipeline.db = bare
    for _ in range(2):  # b2, then its redelivery: the ids b2 stored are its own, not duplicates
        pipeline.store_outcomes("b2", processed(["a", "new", "b"]), NOW, NOW)
    assert bare.puts == 2 + 3  # the two duplicates; then on redelivery all three ids are stored already
    assert counters(pipeline, "b2") == {"processed": 1, "rejected": 0, "duplicates": 2}
    assert pipeline.get_record("a")["batchId"] == "b1" and pipeline.get_record("new")["batchId"] == "b2"
