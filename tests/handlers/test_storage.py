"""PipelineTable.store_outcomes on its own: exactly-once storage and counting, and what a redelivery costs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from rtp_pipeline.storage import PROCESSED, REJECTED, Outcome, PipelineTable

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
