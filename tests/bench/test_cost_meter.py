"""The bench's botocore hook meters what DynamoDB would charge for the calls it sees (bench/_pipeline.py
Recorder): real boto3 calls against moto, units checked against hand-computed item sizes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from bench._pipeline import Recorder

REGION = "us-east-1"


@pytest.fixture
def metered(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Recorder]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        recorder = Recorder(boto3.Session(region_name=REGION))
        recorder.attach(session)  # before any client: a client copies the session's hooks when created
        ddb: Any = session.client("dynamodb")
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "g", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "by-g",
                    "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        with recorder.acting("test"):
            yield ddb, recorder


def _item(pk: str, data_bytes: int, **extra: str) -> dict[str, Any]:
    # pk: 2 + len(pk); data: 4 + data_bytes
    item = {"pk": {"S": pk}, "data": {"S": "x" * data_bytes}}
    item.update({k: {"S": v} for k, v in extra.items()})
    return item


def _units(recorder: Recorder, start: int, purpose: str | None = None) -> float:
    return sum(c.units for _, c in recorder.charges[start:] if purpose is None or c.purpose == purpose)


def test_put_update_failed_condition_and_delete_are_charged_from_the_stored_items(metered: Any) -> None:
    ddb, recorder = metered
    ddb.put_item(TableName="t", Item=_item("REC#1", 1500, g="a"))  # 7 + 1504 + 2 = 1513 B: 2 units
    assert _units(recorder, 0, "table") == 2
    assert _units(recorder, 0, "index by-g") == 1
    assert recorder.charges[0][1].kind == "REC" and recorder.charges[0][1].item_bytes == 1513

    start = len(recorder.charges)
    ddb.update_item(  # grows the item to 7 + 2004 + 2 = 2013 B: the larger (after) decides: 2 units
        TableName="t",
        Key={"pk": {"S": "REC#1"}},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":d": {"S": "x" * 2000}},
    )
    assert _units(recorder, start, "table") == 2
    assert _units(recorder, start, "index by-g") == 0  # KEYS_ONLY, key unchanged: no index write

    start = len(recorder.charges)
    ddb.update_item(  # shrinks it to 7 + 14 + 2 = 23 B: the larger (before, 2013 B) decides: 2 units
        TableName="t",
        Key={"pk": {"S": "REC#1"}},
        UpdateExpression="SET #d = :d",
        ExpressionAttributeNames={"#d": "data"},
        ExpressionAttributeValues={":d": {"S": "x" * 10}},
    )
    assert _units(recorder, start) == 2

    ddb.put_item(TableName="t", Item=_item("REC#2", 3000))  # 7 + 3004 = 3011 B
    start = len(recorder.charges)
    with pytest.raises(ClientError):
        ddb.put_item(TableName="t", Item=_item("REC#2", 10), ConditionExpression="attribute_not_exists(pk)")
    assert _units(recorder, start) == 3  # a failed condition costs the existing item's units

    start = len(recorder.charges)
    ddb.delete_item(TableName="t", Key={"pk": {"S": "REC#2"}})
    assert _units(recorder, start) == 3


def test_transactions_double_every_action_including_condition_checks(metered: Any) -> None:
    ddb, recorder = metered
    ddb.put_item(TableName="t", Item=_item("BATCH#1", 100))
    start = len(recorder.charges)
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": _item("REC#a", 500, g="x")}},
            {"Put": {"TableName": "t", "Item": _item("REC#b", 1200)}},  # 1213 B: 2 units, doubled
            {
                "ConditionCheck": {
                    "TableName": "t",
                    "Key": {"pk": {"S": "BATCH#1"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
        ]
    )
    assert _units(recorder, start, "table") == 2 + 4 + 2
    assert _units(recorder, start, "index by-g") == 1  # index entries are not doubled
    assert recorder.calls[-1].operation == "TransactWriteItems"


def test_reads_are_charged_per_4_kb_and_consistency(metered: Any) -> None:
    ddb, recorder = metered
    ddb.put_item(TableName="t", Item=_item("REC#1", 5000))  # 5011 B: 2 read units strongly consistent
    start = len(recorder.charges)
    ddb.get_item(TableName="t", Key={"pk": {"S": "REC#1"}}, ConsistentRead=True)
    ddb.get_item(TableName="t", Key={"pk": {"S": "REC#1"}}, ProjectionExpression="pk")  # whole item counts
    ddb.get_item(TableName="t", Key={"pk": {"S": "REC#missing"}})
    assert [c.units for _, c in recorder.charges[start:]] == [2.0, 1.0, 0.5]
    assert all(c.purpose == "read" for _, c in recorder.charges[start:])


def test_calls_outside_an_actor_are_not_counted(metered: Any) -> None:
    ddb, recorder = metered
    calls, charges = len(recorder.calls), len(recorder.charges)
    recorder.actor = None
    ddb.put_item(TableName="t", Item=_item("REC#9", 10))
    assert (len(recorder.calls), len(recorder.charges)) == (calls, charges)


def test_partiql_inserts_are_charged_as_puts_and_a_duplicate_as_a_failed_condition(metered: Any) -> None:
    """storage.PipelineTable writes records a client named as INSERTs, 25 to a BatchExecuteStatement."""
    from rtp_pipeline.storage import insert_statement

    from rtp_cli.local.emulation import patch_moto_dynamodb

    patch_moto_dynamodb()  # moto alone cannot run a parameterized INSERT (rtp_cli/local/partiql.py)
    ddb, recorder = metered
    ddb.put_item(TableName="t", Item=_item("REC#old", 3000))  # 9 + 3004 = 3013 B: 3 units
    start = len(recorder.charges)
    answers = ddb.batch_execute_statement(
        Statements=[
            insert_statement("t", _item("REC#new", 1500, g="a")),  # 9 + 1504 + 2 = 1515 B: 2 units + index 1
            insert_statement("t", _item("REC#old", 10)),  # DuplicateItem: the stored item's 3 units
        ]
    )["Responses"]
    assert [(a.get("Error") or {}).get("Code") for a in answers] == [None, "DuplicateItem"]
    assert _units(recorder, start, "table") == 2 + 3
    assert _units(recorder, start, "index by-g") == 1
