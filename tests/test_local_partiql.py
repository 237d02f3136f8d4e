"""The local emulation's PartiQL INSERTs (rtp_cli/local/partiql.py): DynamoDB's documented behaviour for
the one statement shape the processor sends, on moto's tables, and a guard for the moto method it replaces."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws
from rtp_pipeline.storage import insert_statement

from rtp_cli.local import partiql
from rtp_cli.local.emulation import patch_moto_dynamodb

REGION = "us-east-1"


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    patch_moto_dynamodb()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def _item(pk: str, **values: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, **values}


def _codes(answers: list[dict[str, Any]]) -> list[str | None]:
    return [(answer.get("Error") or {}).get("Code") for answer in answers]


def test_the_patch_replaces_moto_s_backend_method() -> None:
    """If moto renames or moves DynamoDBBackend.batch_execute_statement, the INSERTs the processor sends
    for records a client named fail locally: re-aim rtp_cli/local/partiql.patch_batch_insert."""
    import moto.dynamodb.models as models

    patch_moto_dynamodb()
    assert getattr(models.DynamoDBBackend.batch_execute_statement, "runs_inserts", False)


def test_a_duplicate_carries_the_stored_item_only_when_asked_for_all_old(ddb: Any) -> None:
    ddb.put_item(TableName="t", Item=_item("REC#a", b={"S": "first batch"}))
    asked = insert_statement("t", _item("REC#a", b={"S": "second batch"}))
    plain = {k: v for k, v in asked.items() if k != "ReturnValuesOnConditionCheckFailure"}
    [with_item, without] = ddb.batch_execute_statement(Statements=[asked, plain])["Responses"]
    assert with_item["Error"]["Item"] == _item("REC#a", b={"S": "first batch"})
    assert without["Error"]["Code"] == "DuplicateItem" and "Item" not in without["Error"]


def test_an_insert_of_a_stored_key_is_a_duplicate_and_the_others_still_run(ddb: Any) -> None:
    ddb.put_item(TableName="t", Item=_item("REC#a", v={"S": "first"}))
    answers = ddb.batch_execute_statement(
        Statements=[
            insert_statement("t", _item("REC#b", v={"N": "1"})),
            insert_statement("t", _item("REC#a", v={"S": "second"})),
            insert_statement("t", _item("REC#c", z={"B": b"\x00\x01"}, r={"M": {"n": {"N": "2"}}})),
        ]
    )["Responses"]
    assert _codes(answers) == [None, "DuplicateItem", None]
    assert ddb.get_item(TableName="t", Key={"pk": {"S": "REC#a"}})["Item"]["v"] == {"S": "first"}
    stored = ddb.get_item(TableName="t", Key={"pk": {"S": "REC#c"}})["Item"]
    assert stored == _item("REC#c", z={"B": b"\x00\x01"}, r={"M": {"n": {"N": "2"}}})


def test_an_item_dynamodb_refuses_is_that_statement_s_validation_error(ddb: Any) -> None:
    answers = ddb.batch_execute_statement(
        Statements=[
            insert_statement("t", _item("REC#big", s={"S": "x" * 410_000})),  # over 400 KB
            insert_statement("t", _item("REC#" + "k" * 2100)),  # a partition key over 2048 bytes
            insert_statement("t", _item("REC#ok")),
        ]
    )["Responses"]
    assert _codes(answers) == ["ValidationError", "ValidationError", None]
    assert "Item" not in ddb.get_item(TableName="t", Key={"pk": {"S": "REC#big"}})


def test_more_than_25_statements_are_refused_whole(ddb: Any) -> None:
    with pytest.raises(ClientError, match="less than or equal to 25"):
        ddb.batch_execute_statement(Statements=[insert_statement("t", _item(f"REC#{n}")) for n in range(26)])
    assert ddb.scan(TableName="t")["Count"] == 0


def test_an_unknown_table_is_that_statement_s_error(ddb: Any) -> None:
    answers = ddb.batch_execute_statement(Statements=[insert_statement("missing", _item("REC#a"))])[
        "Responses"
    ]
    assert _codes(answers) == ["ResourceNotFound"]


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True)


@given(st.dictionaries(_names, st.text(max_size=5).map(lambda s: {"S": s}), min_size=1, max_size=8))
def test_insert_statements_parse_back_to_the_item(values: dict[str, Any]) -> None:
    statement = insert_statement("t", values)
    assert partiql.parse_insert(statement["Statement"], statement["Parameters"]) == ("t", values)


def test_only_plain_attribute_names_are_spelled_into_a_statement() -> None:
    with pytest.raises(ValueError, match="plain"):
        insert_statement("t", {"pk": {"S": "a"}, "x', 'y": {"S": "b"}})


@pytest.mark.parametrize(
    ("statement", "parameters"),
    [
        ("INSERT INTO \"t\" VALUE {'pk': 'literal'}", []),  # a literal, not a parameter
        ("INSERT INTO \"t\" VALUE {'pk': ?, 'b': ?}", [{"S": "only one"}]),  # too few parameters
        ('SELECT * FROM "t" WHERE pk = ?', [{"S": "a"}]),
        ("UPDATE \"t\" SET a = ? WHERE pk = 'x'", [{"S": "a"}]),
    ],
)
def test_other_statements_are_left_to_moto(statement: str, parameters: list[Any]) -> None:
    assert partiql.parse_insert(statement, parameters) is None
