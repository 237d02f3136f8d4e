"""rtp_cli/local/serializer.py answers exactly as moto's own response serializer: the same bytes for every
response the pipeline reads (items of every attribute type, table and queue descriptions), and it fails
here by name if moto changes what it relies on."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from rtp_cli.local import serializer
from tests.attribute_values import attribute_values, names
from tests.tiers import examples

_names = names
_values = attribute_values(binary_as_text=False, number_and_binary_sets=True)
_items = st.dictionaries(_names.filter(lambda name: name != "pk"), _values, max_size=8)


@contextmanager
def _moto_s_own() -> Iterator[None]:
    """moto's own structure serializer for the block."""
    from moto.core.serialize import ResponseSerializer

    ours = ResponseSerializer._serialize_type_structure
    ResponseSerializer._serialize_type_structure = serializer.moto_structure_serializer()  # type: ignore[method-assign]
    try:
        yield
    finally:
        ResponseSerializer._serialize_type_structure = ours  # type: ignore[method-assign]


def _bodies(client: Any, calls: list[Callable[[], Any]]) -> list[bytes]:
    """The raw response bodies of `calls` (each made through `client`)."""
    seen: list[bytes] = []

    def keep(response_dict: dict[str, Any], **_: Any) -> None:
        seen.append(response_dict["body"])

    client.meta.events.register("before-parse", keep)
    try:
        for call in calls:
            with suppress(ClientError):  # an error answer: its body is kept all the same
                call()
    finally:
        client.meta.events.unregister("before-parse", keep)
    return seen


def _reads(db: Any, item: dict[str, Any]) -> list[Callable[[], Any]]:
    key = {"pk": {"S": "k"}}
    return [
        lambda: db.put_item(TableName="t", Item={**key, **item}),  # as it was before the update below
        lambda: db.get_item(TableName="t", Key=key),
        lambda: db.query(
            TableName="t", KeyConditionExpression="pk = :k", ExpressionAttributeValues={":k": {"S": "k"}}
        ),
        lambda: db.scan(TableName="t"),
        lambda: db.batch_get_item(RequestItems={"t": {"Keys": [key]}}),
        lambda: db.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET z = :z",
            ExpressionAttributeValues={":z": {"N": "1"}},
            ReturnValues="ALL_NEW",
        ),
        lambda: db.describe_table(TableName="t"),
        lambda: db.list_tables(),
        lambda: db.get_item(TableName="t", Key={"pk": {"S": "absent"}}),
        lambda: db.get_item(TableName="absent", Key=key),  # an error response
    ]


def _ours_and_moto_s(item: dict[str, Any]) -> tuple[list[bytes], list[bytes]]:
    serializer.patch_moto_serializer()
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ours = _bodies(db, _reads(db, item))
        with _moto_s_own():
            moto_s = _bodies(db, _reads(db, item))
    return ours, moto_s


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=_items)
def test_dynamodb_answers_are_moto_s_own_bytes(item: dict[str, Any]) -> None:
    """If this fails, serializer.py no longer serializes as moto does (a moto upgrade changed how members
    are picked): align it, or drop patch_moto_serializer."""
    ours, moto_s = _ours_and_moto_s(item)
    assert len(ours) == len(moto_s) == len(_reads(None, item))
    for mine, theirs in zip(ours, moto_s, strict=True):
        assert mine == theirs


def test_every_attribute_type_at_once_and_sqs_answers_are_moto_s_own_bytes() -> None:
    blob = base64.b64encode(b"\x00\x01").decode()
    item = {
        "s": {"S": "x"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\xff"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {"M": {"l": {"L": [{"S": blob}, {"NULL": True}, {"BOOL": False}, {"M": {}}]}}},
    }
    ours, moto_s = _ours_and_moto_s(item)
    assert ours == moto_s
    assert b'"BOOL": false' in ours[1] and b'"NULL": true' in ours[1]  # the GetItem

    serializer.patch_moto_serializer()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
        sqs.send_message(
            QueueUrl=url, MessageBody="m", MessageAttributes={"a": {"DataType": "String", "StringValue": "v"}}
        )

        def reads() -> list[Callable[[], Any]]:
            return [
                lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
                lambda: sqs.list_queues(),
                lambda: sqs.get_queue_url(QueueName="q"),
            ]

        ours = _bodies(sqs, reads())
        with _moto_s_own():
            moto_s = _bodies(sqs, reads())
    assert ours == moto_s


def test_the_comparison_sees_a_member_picked_under_the_wrong_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: with a plan that forgets the first name of each member (NoAlias's `S`
    of an AttributeValue, ...) the item comes out without its values, and the bytes differ from moto's."""
    real_plan = serializer._member_plan

    def forgetful(picker: Any, kind: Any, shape: Any) -> list[tuple[str, Any, tuple[str, ...]]]:
        return [(key, member, names[1:]) for key, member, names in real_plan(picker, kind, shape)]

    monkeypatch.setattr(serializer, "_member_plan", forgetful)
    ours, moto_s = _ours_and_moto_s({"a": {"S": "x"}})
    assert ours[1] != moto_s[1]  # the GetItem


def test_moto_still_has_what_the_serializer_relies_on() -> None:
    """A plain dict's member names come from moto's alias providers asked about an empty dict: right only
    while none of them reads the dict's contents. A new provider fails this by name: read it, then add it
    here (or drop patch_moto_serializer)."""
    from moto.core import serialize
    from moto.core.responses import ActionResult

    assert [provider.__name__ for provider in serialize.DEFAULT_ALIAS_PROVIDERS] == [
        "ExplicitAlias",  # obj.Meta: a dict has none
        "ShapeNameAlias",  # the shape's
        "NoAlias",
        "ShapePrefixAlias",  # the shape's and its parent's
        "ClassPrefixAlias",  # the value's class name: `dict`
        "ModelAlias",  # the shape's
    ]
    assert hasattr(serialize.ResponseSerializer, "_serialize_type_structure")
    assert hasattr(serialize.AttributePicker, "get_possible_keys")
    assert hasattr(serialize.AttributePicker, "response_transformers") or "response_transformers" in (
        serialize.AttributePicker.__init__.__code__.co_names
    )
    assert "XFormedAttributePicker" in ActionResult.execute_result.__code__.co_names
