"""PipelineTable.store_outcomes on its own: exactly-once storage and counting, and what a redelivery costs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws
from rtp_pipeline.storage import PROCESSED, REJECTED, Outcome, PipelineTable, deserialize

from tests.handlers.harness import REGION

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


class CountingClient:
    """The real (moto) DynamoDB client, counting TransactWriteItems calls."""

    def __init__(self, client: Any) -> None:
        self._client, self.transactions = client, 0

    def transact_write_items(self, **kwargs: Any) -> Any:
        self.transactions += 1
        return self._client.transact_write_items(**kwargs)

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


def test_redelivery_stores_the_rest_once_and_costs_one_transaction_more_per_chunk(table: Any) -> None:
    pipeline, client = table
    first = pipeline.store_outcomes("b1", outcomes(250)[:120], NOW, NOW)  # a delivery that died midway
    assert len(first) == 120 and client.transactions == 2  # chunks of 99 + 21

    client.transactions = 0
    again = pipeline.store_outcomes("b1", outcomes(250), NOW, NOW)  # SQS redelivers the whole message
    assert [o.record_id for o in again] == [f"r{n}" for n in range(120, 250)]
    # chunk 1: 99 stored before -> 1 cancelled call; chunk 2: 21 of 99 stored -> cancelled + retry;
    # chunk 3: 52 new -> 1 call. Not one transaction per record.
    assert client.transactions == 4
    assert counters(pipeline, "b1") == {"processed": 225, "rejected": 25, "duplicates": 0}


def test_ids_stored_by_another_batch_are_counted_as_duplicates_once(table: Any) -> None:
    pipeline, _ = table
    pipeline.store_outcomes("b1", outcomes(5), NOW, NOW)
    for _ in range(2):  # the second batch, delivered twice
        pipeline.store_outcomes("b2", outcomes(5) + outcomes(3, prefix="new"), NOW, NOW)
    assert counters(pipeline, "b2") == {"processed": 2, "rejected": 1, "duplicates": 5}  # new0 is REJECTED
    assert pipeline.get_record("r1")["batchId"] == "b1"  # the first record wins


# --- a record's content never fails its neighbours --------------------------------------------------
class RefusingClient(CountingClient):
    """Like DynamoDB refusing items for their content: a transaction holding an item `refuses` picks is
    answered as DynamoDB answers (`mode`): "cancel" (TransactionCanceledException, reason ValidationError
    on that put), "request" (ValidationException for the whole request) or "params" (botocore's
    client-side ParamValidationError). Other transactions go to moto."""

    def __init__(self, client: Any, refuses: Callable[[dict[str, Any]], bool], mode: str) -> None:
        super().__init__(client)
        self.refuses, self.mode = refuses, mode

    def transact_write_items(self, **kwargs: Any) -> Any:
        items = kwargs["TransactItems"]
        refused = ["Put" in item and self.refuses(deserialize(item["Put"]["Item"])) for item in items]
        if not any(refused):
            return super().transact_write_items(**kwargs)
        self.transactions += 1
        if self.mode == "params":
            raise ParamValidationError(report="Invalid type for parameter TransactItems[0].Put.Item")
        if self.mode == "request":
            error: Any = {
                "Error": {
                    "Code": "ValidationException",
                    "Message": "Item size has exceeded the maximum allowed size",
                }
            }
            raise ClientError(error, "TransactWriteItems")
        reasons = [
            {"Code": "ValidationError", "Message": "Nesting Levels have exceeded supported limits"}
            if bad
            else {"Code": "None"}
            for bad in refused
        ]
        cancelled: Any = {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": reasons,
        }
        raise ClientError(cancelled, "TransactWriteItems")


def processed(ids: list[str]) -> list[Outcome]:
    return [Outcome(i, PROCESSED, "t", result={"id": i}) for i in ids]


@pytest.mark.parametrize("mode", ["cancel", "request", "params"])
def test_an_item_dynamodb_refuses_is_stored_rejected_and_the_rest_is_written(table: Any, mode: str) -> None:
    pipeline, client = table
    refusing = RefusingClient(client._client, lambda item: item["pk"] == "REC#bad" and "result" in item, mode)
    pipeline.db = refusing
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
    # With reasons, one retry of the transaction; without, one transaction per record, once.
    assert refusing.transactions == (2 if mode == "cancel" else 1 + len(ids) + 1)
    again = pipeline.store_outcomes("b1", processed(ids), NOW, NOW)  # redelivered: nothing new
    assert again == [] and counters(pipeline, "b1") == {"processed": 3, "rejected": 1, "duplicates": 0}


def test_moto_refusals_of_real_items_are_isolated_too(table: Any) -> None:
    """Without injection: items moto (like DynamoDB) refuses, too large or with a number out of range."""
    pipeline, _ = table
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
    assert client.transactions == 1


def test_a_refused_rejected_record_or_a_conflict_fails_loudly(table: Any) -> None:
    """Not content: the REJECTED stand-in itself refused, or a conflicting write. SQS must retry."""
    pipeline, client = table
    pipeline.db = RefusingClient(client._client, lambda item: item["pk"] == "REC#bad", "cancel")
    with pytest.raises(RuntimeError, match="DynamoDB refused the REJECTED record bad"):
        pipeline.store_outcomes("b1", processed(["bad"]), NOW, NOW)

    class Conflicting(CountingClient):
        def transact_write_items(self, **kwargs: Any) -> Any:
            reasons = [{"Code": "TransactionConflict"} for _ in kwargs["TransactItems"]]
            error: Any = {
                "Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                "CancellationReasons": reasons,
            }
            raise ClientError(error, "TransactWriteItems")

    pipeline.db = Conflicting(client._client)
    with pytest.raises(ClientError, match="conflict"):
        pipeline.store_outcomes("b2", processed(["x", "y"]), NOW, NOW)
    assert pipeline.get_record("x") is None


def test_reasons_and_types_are_stored_readable_and_bounded(table: Any) -> None:
    pipeline, _ = table
    pipeline.store_outcomes(
        "b1", [Outcome("r", REJECTED, "t\ud800" * 300, reason="bad \udc00 value " + "y" * 5000)], NOW, NOW
    )
    item = pipeline.get_record("r")
    assert item["reason"].startswith("bad \\udc00 value") and len(item["reason"]) == 2000
    assert item["type"].startswith("t\\ud800") and len(item["type"]) == 200


def test_stored_owners_reads_in_pages_of_100(table: Any) -> None:
    pipeline, _ = table
    pipeline.store_outcomes("b1", outcomes(150), NOW, NOW)
    pipeline.store_outcomes("b2", outcomes(3, prefix="x"), NOW, NOW)
    owners = pipeline.stored_owners([f"r{n}" for n in range(140, 160)] + ["x1", "missing", "x1"])
    assert owners == {**{f"r{n}": "b1" for n in range(140, 150)}, "x1": "b2"}
