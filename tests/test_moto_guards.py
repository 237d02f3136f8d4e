"""Guards on the moto internals the local runtime relies on (all in rtp_cli/local/emulation.py).

A moto upgrade that changes one of them fails a test here by name, instead of local processing silently
dropping back to minutes for a few thousand records (the transaction snapshot) or `rtp status --env local`
silently reporting wrong queue ages (the SQS message list).
"""

from __future__ import annotations

import copy
import http.client
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from rtp_cli.local import emulation
from rtp_cli.local.runtime import queue_ages
from rtp_cli.local.template import ACCOUNT_ID
from tests.attribute_values import attribute_values, names
from tests.tiers import examples

REGION = "us-east-1"
TABLE_ITEMS = 100  # unpatched, a 5-item transaction deep-copies 5 x 100 items


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    # What start_emulation does. Process-wide and permanent, as in the runtime; it changes the cost of a
    # transaction, not its outcome (test_a_failed_transaction_still_rolls_back_exactly).
    emulation.patch_moto_dynamodb()
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def item_copies(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every DynamoDB item moto deep-copies while the test runs, however the copy is reached."""
    from moto.dynamodb.models.dynamo_type import Item

    copied: list[Any] = []
    original = Item.__deepcopy__

    def counting(self: Any, memo: dict[int, Any]) -> Any:
        copied.append(self)
        return original(self, memo)

    monkeypatch.setattr(Item, "__deepcopy__", counting)
    return copied


def _table(ddb: Any, name: str, range_key: bool, items: int = TABLE_ITEMS) -> None:
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "S"})
    ddb.create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
    )
    for start in range(0, items, 25):
        ddb.batch_write_item(
            RequestItems={
                name: [
                    {"PutRequest": {"Item": _key(n, range_key) | {"v": {"N": "0"}}}}
                    for n in range(start, min(start + 25, items))
                ]
            }
        )


def _key(n: int, range_key: bool) -> dict[str, Any]:
    return {"pk": {"S": f"item-{n}"}} | ({"sk": {"S": "s"}} if range_key else {})


def _scan(ddb: Any, name: str) -> list[dict[str, Any]]:
    items = ddb.scan(TableName=name)["Items"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item.get("sk", {}).get("S", "")))


@pytest.mark.parametrize("range_key", [False, True], ids=["hash-key", "hash-and-range-key"])
def test_moto_transactions_still_use_the_snapshot_speed_up(
    ddb: Any, item_copies: list[Any], range_key: bool
) -> None:
    """If this fails, moto's TransactWriteItems no longer snapshots through `moto.dynamodb.models.copy`
    (emulation.patch_moto_dynamodb): every transaction copies the whole table again. Re-aim the patch."""
    import moto.dynamodb.models as models

    assert isinstance(models.copy, emulation._SnapshotOncePerTable)
    _table(ddb, "guarded", range_key)
    item_copies.clear()
    touched = [5, 6, 7, TABLE_ITEMS + 1, TABLE_ITEMS + 2]  # three existing items, two new ones
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "guarded", "Item": _key(n, range_key) | {"v": {"N": "1"}}}} for n in touched
        ]
    )
    assert len(item_copies) <= len(touched), (
        f"moto deep-copied {len(item_copies)} items for a {len(touched)}-item transaction on a "
        f"{TABLE_ITEMS}-item table: the snapshot speed-up no longer applies"
    )
    written = {item["pk"]["S"] for item in _scan(ddb, "guarded") if item["v"]["N"] == "1"}
    assert written == {f"item-{n}" for n in touched}


@pytest.mark.parametrize("range_key", [False, True], ids=["hash-key", "hash-and-range-key"])
def test_a_failed_transaction_still_rolls_back_exactly(ddb: Any, range_key: bool) -> None:
    _table(ddb, "rollback", range_key, items=10)
    before = _scan(ddb, "rollback")
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "rollback", "Item": _key(1, range_key) | {"v": {"N": "9"}}}},
                {"Delete": {"TableName": "rollback", "Key": _key(2, range_key)}},
                {"Put": {"TableName": "rollback", "Item": _key(TABLE_ITEMS + 5, range_key)}},
                {
                    "ConditionCheck": {
                        "TableName": "rollback",
                        "Key": _key(3, range_key),
                        "ConditionExpression": "attribute_not_exists(pk)",  # item-3 exists: cancels all
                    }
                },
            ]
        )
    assert _scan(ddb, "rollback") == before


def test_the_copy_counter_sees_a_whole_table_copy(ddb: Any, item_copies: list[Any]) -> None:
    """The counter above is not blind: a deep copy of the table (what moto does unpatched) is counted."""
    from moto.dynamodb.models import dynamodb_backends

    _table(ddb, "counted", False)
    item_copies.clear()
    copy.deepcopy(dynamodb_backends[ACCOUNT_ID][REGION].tables["counted"])
    assert len(item_copies) == TABLE_ITEMS


def test_moto_sqs_queues_still_hold_every_message_in_their_message_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If this fails, moto no longer keeps a queue's messages in `Queue._messages`: fix
    emulation.all_messages (the only reader), which `rtp status --env local` uses for queue ages."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        from moto.sqs.models import sqs_backends

        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="guarded")["QueueUrl"]
        for body in ("first", "second"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=60)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
        assert len(received["Messages"]) == 1  # now in flight
        queue = sqs_backends[ACCOUNT_ID][REGION].queues["guarded"]

        messages = emulation.all_messages(queue)
        assert sorted(m.body for m in messages) == ["delayed", "first", "second"]
        assert all(float(m.sent_timestamp) > 0 for m in messages)
        assert len(queue.messages) == 1  # moto's public list: the visible one only (why _messages is read)
        ages = queue_ages(REGION)["guarded"]
        assert ages["messages"] == 3 and ages["oldest_age_seconds"] is not None


def test_the_local_keys_requirement_is_released_with_the_emulation() -> None:
    """`require_credentials` switches on moto's process-wide IAM auth; an environment run in-process (the
    watch tests) must hand open moto back on stop, or every later `mock_aws` test in the session gets 403."""
    from moto import mock_aws, settings

    from rtp_cli.local.emulation import release_credentials, require_credentials

    before = settings.INITIAL_NO_AUTH_ACTION_COUNT
    with mock_aws():
        require_credentials("AKIALOCALTEST0000000", "local-secret")
        assert settings.INITIAL_NO_AUTH_ACTION_COUNT == 0
        release_credentials()
    assert before == settings.INITIAL_NO_AUTH_ACTION_COUNT


def test_moto_kms_symmetric_keys_still_share_one_private_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """If this fails, moto no longer makes a KMS key's private key through `moto.kms.models.
    generate_private_key` (emulation.patch_moto_kms): every symmetric key costs an RSA key generation
    (~0.2 s) again, and every test that builds the stack in moto slows down. Re-aim the patch."""
    import moto.kms.models as models

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    emulation.patch_moto_kms()
    assert isinstance(models.generate_private_key, emulation._SharedSymmetricPrivateKey)
    with mock_aws():
        kms = boto3.client("kms", region_name=REGION)
        first, second = (kms.create_key(Description=n)["KeyMetadata"]["KeyId"] for n in ("a", "b"))
        signing = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")["KeyMetadata"]["KeyId"]
        keys = models.kms_backends[ACCOUNT_ID][REGION].keys
        assert keys[first].private_key is keys[second].private_key
        assert keys[signing].private_key is not keys[first].private_key  # asymmetric: a key pair of its own
        # Symmetric keys still encrypt with key material of their own: one key cannot decrypt the other's.
        blob = kms.encrypt(KeyId=first, Plaintext=b"secret")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"
        with pytest.raises(kms.exceptions.ClientError):
            kms.decrypt(CiphertextBlob=blob, KeyId=second)


def test_moto_sqs_still_spells_attribute_names_through_the_memoized_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If this fails, moto's SQS queues no longer convert attribute names with `moto.sqs.models.
    camelcase_to_underscores` (emulation.patch_moto_sqs): every queue call pays ~60 conversions again.
    Re-aim the patch."""
    import moto.sqs.models as models

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    emulation.patch_moto_sqs()
    cached = models.camelcase_to_underscores
    assert hasattr(cached, "cache_info")
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="spelled", Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
        before = cached.cache_info()
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        after = cached.cache_info()
    assert after.hits + after.misses > before.hits + before.misses  # moto still spells through it
    assert attributes["VisibilityTimeout"] == "7" and attributes["QueueArn"].endswith(":spelled")
    assert cached("VisibilityTimeout") == "visibility_timeout"  # the same answers, memoized
    assert cached("ApproximateNumberOfMessagesNotVisible") == "approximate_number_of_messages_not_visible"


def _account_contents(region: str = REGION) -> tuple[list[str], list[str], list[str], int]:
    """What the handler tests' account holds: queues (with their messages), tables, buckets, keys."""
    sqs: Any = boto3.client("sqs", region_name=region)
    queues: list[str] = sqs.list_queues().get("QueueUrls", [])
    visible = "ApproximateNumberOfMessages"
    messages = sum(
        int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[visible])["Attributes"][visible])
        for url in queues
    )
    tables = boto3.client("dynamodb", region_name=region).list_tables()["TableNames"]
    buckets = [b["Name"] for b in boto3.client("s3", region_name=region).list_buckets()["Buckets"]]
    return sorted(queues), tables, buckets, messages


def test_a_copied_moto_state_comes_back_whole_and_independent() -> None:
    """MotoState (the handler tests' fresh account per test) copies every backend moto holds, and each
    restore is a copy of its own: what one test writes never reaches the next."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="work")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="before the copy")
        _table(boto3.client("dynamodb", region_name=REGION), "records", range_key=False, items=3)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="raw")
        taken = _account_contents()
        state = emulation.MotoState()
    assert taken == ([url], ["records"], ["raw"], 1)

    with mock_aws():
        assert _account_contents() == ([], [], [], 0)  # mock_aws() starts empty: the state is the restore's
        state.restore()
        assert _account_contents() == taken
        sqs = boto3.client("sqs", region_name=REGION)
        sqs.send_message(QueueUrl=url, MessageBody="after the copy")  # the restored queue's own lock works
        boto3.client("dynamodb", region_name=REGION).delete_table(TableName="records")
        assert _account_contents() != taken
    with mock_aws():
        state.restore()
        assert _account_contents() == taken
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in received] == ["before the copy"]


# ---- the emulation's endpoint (rtp_cli/local/awsserver.py): moto's WSGI application over keep-alive --------


def _captured_werkzeug_environ(raw: bytes) -> dict[str, Any]:
    """The environ moto's own server (werkzeug's dev server with moto's request handler) gives its
    application for this raw request."""
    import socket
    import threading

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    captured: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        captured.update(environ, body=environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    server = make_server("127.0.0.1", 0, app, True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as client:
        client.sendall(raw)
        client.recv(65536)
    thread.join(timeout=5)
    server.server_close()
    return captured


def test_the_endpoint_builds_moto_the_environ_moto_s_own_server_builds() -> None:
    """If this fails, werkzeug's or moto's `make_environ` reads something of its handler that
    awsserver.wsgi_environ does not set, or builds the environ differently: moto would see requests
    unlike the ones its own server gives it. Re-check wsgi_environ against MotoRequestHandler."""
    from rtp_cli.local.awsserver import wsgi_environ
    from rtp_cli.local.http11 import Headers, Request

    body = b'{"TableName": "t"}'
    headers = [
        ("Host", "127.0.0.1:4566"),
        ("X-Amz-Target", "DynamoDB_20120810.DescribeTable"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("Content-Length", str(len(body))),
        ("x-amz-meta-with_underscore", "kept"),  # moto preserves underscored names (S3 metadata)
        ("X-Twice", "a"),
        ("X-Twice", "b"),
    ]
    target = "/bucket/some%20key?list-type=2&prefix=a%2Fb"
    raw = f"PUT {target} HTTP/1.1\r\n".encode() + b"".join(
        f"{name}: {value}\r\n".encode() for name, value in headers
    )
    theirs = _captured_werkzeug_environ(raw + b"\r\n" + body)
    request = Request("PUT", target, "1.1", Headers(headers), body, ("127.0.0.1", 1))
    ours = wsgi_environ(request, ("127.0.0.1", 1))
    assert ours["wsgi.input"].read() == theirs.pop("body") == body
    differ_by_connection = {
        "wsgi.input",
        "wsgi.errors",
        "werkzeug.socket",
        "REMOTE_PORT",
        "SERVER_PORT",
        "SERVER_SOFTWARE",
        "werkzeug.request",
    }
    assert {k: v for k, v in ours.items() if k not in differ_by_connection} == {
        k: v for k, v in theirs.items() if k not in differ_by_connection
    }
    assert ours["PATH_INFO"] == "/bucket/some key" and ours["HTTP_X_TWICE"] == "a,b"


def _new_connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import urllib3.connection

    opened: list[int] = []
    original = urllib3.connection.HTTPConnection._new_conn

    def counting(self: Any) -> Any:
        opened.append(1)
        return original(self)

    monkeypatch.setattr(urllib3.connection.HTTPConnection, "_new_conn", counting)
    return opened


def _client_options(server: Any) -> dict[str, Any]:
    """boto3 client options for a served emulation (moto accepts any keys unless told otherwise)."""
    host, port = server.get_host_and_port()
    return {
        "endpoint_url": f"http://{host}:{port}",
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


def _calls_through(server: Any) -> None:
    ddb = boto3.client("dynamodb", **_client_options(server))
    for _ in range(5):
        ddb.list_tables()


@pytest.mark.parametrize("kept_alive", [True, False])
def test_the_endpoint_keeps_connections_alive_where_moto_s_server_does_not(
    monkeypatch: pytest.MonkeyPatch, kept_alive: bool
) -> None:
    """Five calls of one client: one connection through the emulation's endpoint. moto's own server (the
    negative case) closes every connection; if it stops doing so, awsserver.py may no longer be needed."""
    from moto.server import ThreadedMotoServer

    from rtp_cli.local.awsserver import MotoHttpServer

    server: Any = MotoHttpServer("127.0.0.1", 0) if kept_alive else ThreadedMotoServer("127.0.0.1", 0, False)
    server.start()
    try:
        opened = _new_connections(monkeypatch)
        _calls_through(server)
    finally:
        server.stop()
    assert len(opened) == (1 if kept_alive else 5)


def test_the_endpoint_answers_s3_heads_deletes_and_errors_as_moto_does() -> None:
    """The answers that differ in framing: HEAD (Content-Length of the object, no body), 204 (no body), an
    error document, a long poll; each through one kept-alive connection per client."""
    from rtp_cli.local.awsserver import MotoHttpServer

    server = MotoHttpServer("127.0.0.1", 0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = _client_options(server)
        s3 = boto3.client("s3", **options)
        s3.create_bucket(Bucket="guarded-bucket")
        s3.put_object(Bucket="guarded-bucket", Key="k", Body=b"hello world")
        assert s3.head_object(Bucket="guarded-bucket", Key="k")["ContentLength"] == 11
        assert s3.get_object(Bucket="guarded-bucket", Key="k")["Body"].read() == b"hello world"
        deleted = s3.delete_object(Bucket="guarded-bucket", Key="k")
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket="guarded-bucket", Key="k")
        # A chunked upload (other SDKs, curl -T -): the body arrives whole, as through moto's own server.
        chunked = http.client.HTTPConnection(host, port, timeout=10)
        chunked.request(
            "PUT",
            "/guarded-bucket/chunked",
            body=iter([b"hello ", b"chunks"]),
            encode_chunked=True,
        )
        assert chunked.getresponse().status == 200
        chunked.close()
        assert s3.get_object(Bucket="guarded-bucket", Key="chunked")["Body"].read() == b"hello chunks"
        sqs = boto3.client("sqs", **options)
        url = sqs.create_queue(QueueName="guarded")["QueueUrl"]
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
        sqs.send_message(QueueUrl=url, MessageBody="after the poll")
        assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "after the poll"
    finally:
        server.stop()


def test_the_endpoint_s_dispatcher_remembers_moto_s_answer_per_host() -> None:
    """If this fails, moto's dispatcher no longer resolves a request's backend through
    `get_backend_for_host` (awsserver._Dispatcher remembers its answers): re-aim the override."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from rtp_cli.local.awsserver import _Dispatcher

    moto_s, ours = DomainDispatcherApplication(create_backend_app), _Dispatcher()
    for host in ("dynamodb.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com", "s3", "nothing.example"):
        assert ours.get_backend_for_host(host) == ours.get_backend_for_host(host)
        assert ours.get_backend_for_host(host) == moto_s.get_backend_for_host(host)
    signed = "AWS4-HMAC-SHA256 Credential=AKIA/20260101/us-east-1/dynamodb/aws4_request, Signature=x"
    environ = {
        "PATH_INFO": "/",
        "HTTP_AUTHORIZATION": signed,
        "HTTP_HOST": "127.0.0.1:1",
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.ListTables",
    }
    ours._backend_of.clear()
    assert ours.get_application(environ) is ours.app_instances["dynamodb"]
    assert "dynamodb" in ours._backend_of  # resolved through the override


# ---- rtp_cli/local/speedups.py: moto's Item construction and JSON request parser, same results ------------


_names = names
_values = attribute_values(binary_as_text=True, number_and_binary_sets=False)
_items = st.dictionaries(_names, _values, min_size=1, max_size=8)


def _both_parsers(service: str, operation: str, body: dict[str, Any]) -> tuple[Any, Any]:
    import json

    from moto.core.parse import JSONParser
    from moto.core.utils import get_service_model

    from rtp_cli.local.speedups import fast_json_parser

    model = get_service_model(service).operation_model(operation)
    request: Any = {"method": "POST", "values": {}, "headers": {}, "body": json.dumps(body).encode()}
    request.update(url_path="/", url_params={})
    return JSONParser(model).parse(request), fast_json_parser(JSONParser)(model).parse(request)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=_items, names=st.dictionaries(st.just("#n"), _names, max_size=1), extra=_names)
def test_the_fast_json_parser_parses_dynamodb_requests_exactly_as_moto_s(
    item: dict[str, Any], names: dict[str, str], extra: str
) -> None:
    """If this fails, speedups._FastJSONParser no longer parses as moto's JSONParser (a moto upgrade changed
    its structure, blob or number handling): align it, or drop it from patch_moto_speedups."""
    put = {"TableName": "t", "Item": item, "ExpressionAttributeNames": names, extra: {"unknown": 1}}
    batch = {"RequestItems": {"t": [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": item}}]}}
    update = {
        "TableName": "t",
        "Key": item,
        "UpdateExpression": "SET a = :v",
        "ExpressionAttributeValues": {":v": next(iter(item.values()))},
        "ReturnValues": "ALL_NEW",
        "ReturnConsumedCapacity": None,
    }
    transact = {"TransactItems": [{"Put": {"TableName": "t", "Item": item}}, {"ConditionCheck": None}]}
    for operation, body in (
        ("PutItem", put),
        ("BatchWriteItem", batch),
        ("UpdateItem", update),
        ("TransactWriteItems", transact),
    ):
        moto_s, ours = _both_parsers("dynamodb", operation, body)
        assert ours == moto_s
        assert repr(ours) == repr(moto_s)  # the same member order too


def test_the_fast_json_parser_parses_sqs_and_malformed_requests_as_moto_s() -> None:
    entries = [
        {
            "Id": "1",
            "MessageBody": "x",
            "DelaySeconds": "3",
            "MessageAttributes": {"a": {"DataType": "String", "StringValue": "v"}},
        }
    ]
    moto_s, ours = _both_parsers("sqs", "SendMessageBatch", {"QueueUrl": "u", "Entries": entries})
    assert ours == moto_s and ours["Entries"][0]["DelaySeconds"] == 3
    for malformed in (
        {"TableName": "t", "Item": ["not", "a", "map"]},
        {"TableName": "t", "Item": {"a": "b"}},
    ):
        outcomes = []
        for parser in (0, 1):
            try:
                outcomes.append(repr(_both_parsers("dynamodb", "PutItem", malformed)[parser]))
            except Exception as error:
                outcomes.append(type(error).__name__)
        assert outcomes[0] == outcomes[1]


def _moto_item(attrs: dict[str, Any]) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    return Item(DynamoType({"S": "h"}), None, attrs)


def _built(init: Any, attrs: dict[str, Any]) -> Any:
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    item: Any = Item.__new__(Item)
    try:
        init(item, DynamoType({"S": "h"}), None, attrs)
    except Exception as error:
        return type(error).__name__
    return (type(item.attrs).__name__, list(item.attrs.items()), sorted(vars(item)))


@settings(max_examples=examples(40), deadline=None)
@given(item=_items, pad=st.integers(0, 3000))
def test_items_are_built_exactly_as_moto_builds_them_around_the_size_limit(
    item: dict[str, Any], pad: int
) -> None:
    """If this fails, moto's Item.__init__ or LimitedSizeDict changed (speedups._item_init stands in for
    the first): align _item_init and ITEM_SIZE_LIMIT with them, or drop the patch."""
    from moto.dynamodb.models.dynamo_type import Item

    from rtp_cli.local import speedups

    original = getattr(speedups, "_moto_item_init", None) or Item.__init__
    assert original is not speedups._item_init
    # Items just under, at and over the limit: one big attribute sized to land around it.
    for total in (
        speedups.ITEM_SIZE_LIMIT - pad,
        speedups.ITEM_SIZE_LIMIT,
        speedups.ITEM_SIZE_LIMIT + 1 + pad,
    ):
        attrs = {**item, "big": {"S": "x" * max(0, total - sum(len(k.encode()) for k in item) - 3)}}
        assert _built(speedups._item_init, attrs) == _built(original, attrs)


_parsed_values = st.one_of(  # as moto's parser hands them to Item: binary values as bytes
    _values,
    st.builds(lambda b: {"B": b}, st.binary(max_size=40)),
    st.builds(lambda n: {"N": n}, st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,8})?", fullmatch=True)),
)


@settings(max_examples=examples(80), deadline=None)
@given(value=st.one_of(_parsed_values, st.builds(lambda s: {"N": s}, st.text())))
@example(value={"S": "é\U0001f600"})  # UTF-8 bytes, not characters
@example(value={"B": b"\x00\xff"})
@example(value={"N": "-1.5E+3"})
def test_an_attribute_s_size_is_moto_s(value: dict[str, Any]) -> None:
    """If this fails, moto's DynamoType.size changed (speedups.attribute_size stands in for it when building
    an item): align attribute_size with it, or drop the patch."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    from rtp_cli.local.speedups import attribute_size

    typed = DynamoType(value)
    assert attribute_size(typed) == typed.size()


@settings(max_examples=examples(20), deadline=None)
@given(item=st.dictionaries(_names, _parsed_values, max_size=6))
def test_an_item_exactly_at_the_size_limit_is_built_and_one_byte_over_is_refused(
    item: dict[str, Any],
) -> None:
    """If this fails, speedups._item_init no longer refuses exactly the items moto refuses."""
    from moto.dynamodb.models.dynamo_type import DynamoType, Item
    from moto.dynamodb.models.utilities import bytesize

    from rtp_cli.local import speedups

    original = getattr(speedups, "_moto_item_init", None) or Item.__init__
    item.pop("big", None)
    others = sum(bytesize(name) + DynamoType(value).size() for name, value in item.items())
    fill = speedups.ITEM_SIZE_LIMIT - others - bytesize("big") - 2  # "é" is two bytes, one character
    if fill < 0:
        return
    for extra in (0, 1):
        attrs = {**item, "big": {"S": "é" + "x" * (fill + extra)}}
        built, expected = _built(speedups._item_init, attrs), _built(original, attrs)
        assert built == expected
        assert (built == "ItemSizeTooLarge") == (extra == 1)


def test_the_served_emulation_parses_and_builds_items_through_the_speed_ups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If this fails, moto no longer takes its JSON parser from `PROTOCOL_PARSERS` or no longer builds
    items with `Item.__init__` (speedups.patch_moto_speedups would then change nothing): re-aim them."""
    import moto.core.parse as parse
    from moto.dynamodb.models.dynamo_type import Item

    from rtp_cli.local import speedups

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # What this process had before: put back after the test, so later tests meet moto as they expect.
    monkeypatch.setattr(Item, "__init__", Item.__init__)
    monkeypatch.setitem(parse.PROTOCOL_PARSERS, "json", parse.PROTOCOL_PARSERS["json"])
    speedups.patch_moto_speedups()
    assert Item.__init__ is speedups._item_init
    seen: list[str] = []
    parser = speedups.fast_json_parser  # the class installed is made by this factory
    installed = parse.PROTOCOL_PARSERS["json"]
    assert installed.__name__ == "FastJSONParser" and callable(parser)
    original_parse = installed.parse

    def recording(self: Any, request: Any) -> Any:
        seen.append(self.operation_model.name)
        return original_parse(self, request)

    monkeypatch.setattr(installed, "parse", recording)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _table(ddb, "sped", range_key=False, items=2)
        got = ddb.get_item(TableName="sped", Key={"pk": {"S": "item-1"}})["Item"]
        with pytest.raises(ddb.exceptions.ClientError, match="Item size has exceeded"):
            ddb.put_item(TableName="sped", Item={"pk": {"S": "big"}, "v": {"S": "x" * 410_000}})
    assert got["pk"] == {"S": "item-1"}
    assert "PutItem" in seen and "GetItem" in seen


_log_events = st.lists(
    st.fixed_dictionaries(
        {
            "timestamp": st.sampled_from([-1, 0, 1, 2, 3]),  # steps back in time; 0 and -1 are too old
            "message": st.text(max_size=8),  # "" is refused by the client's validation
        }
    ),
    max_size=4,  # [] is refused too
)


def _shipped(logs: Any, group: str, events: list[dict[str, Any]], base_ms: int) -> Any:
    """What a LogShipper's calls on `logs` leave in the group (or the error they raise, as the client's
    exception class name, code and message)."""
    events = [
        {
            "timestamp": base_ms + e["timestamp"] * 1000 if e["timestamp"] > 0 else e["timestamp"],
            "message": e["message"],
        }
        for e in events
    ]
    try:
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        again = None
        try:
            logs.create_log_stream(logGroupName=group, logStreamName="s")
        except logs.exceptions.ResourceAlreadyExistsException as error:
            again = error.response["Error"]
        answer = logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=events)
        missing = None
        try:
            logs.put_log_events(logGroupName=group + "-none", logStreamName="s", logEvents=events)
        except logs.exceptions.ResourceNotFoundException as error:
            missing = error.response["Error"]
    except Exception as error:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        return type(error).__name__, code, str(error).split(": ", 1)[-1]
    return again and again["Code"], missing and missing["Code"], answer.get("rejectedLogEventsInfo")


@settings(
    max_examples=examples(20),
    deadline=None,
    # the fixture only sets fake keys, the same for every example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(events=_log_events)
def test_in_process_log_shipping_stores_and_refuses_exactly_as_the_logs_client(
    events: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If this fails, moto's logs backend (`logs_backends`, its `create_log_stream` and `put_log_events`)
    changed under emulation.InProcessLogs, which the runtime's LogShipper calls instead of the client:
    align InProcessLogs with what the client path now does, or ship through the client again."""
    import time

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    base_ms = int(time.time() * 1000) - 60_000
    with mock_aws():
        client = boto3.client("logs", region_name=REGION)
        direct = emulation.InProcessLogs(client)
        outcomes, stored = [], []
        for group, logs in (("via-client", client), ("in-process", direct)):
            client.create_log_group(logGroupName=group)
            outcomes.append(_shipped(logs, group, events, base_ms))
            found = client.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True)
            stored.append([(e["timestamp"], e["message"]) for e in found["events"]])
        missing_group = [_shipped(logs, "never-created", events, base_ms) for logs in (client, direct)]
    assert outcomes[0] == outcomes[1]
    assert stored[0] == stored[1]
    assert missing_group[0] == missing_group[1]


@pytest.fixture
def expression_speedups(monkeypatch: pytest.MonkeyPatch) -> Any:
    """speedups' expression caches and method-name memo installed for the test (moto as before after)."""
    import moto.core.responses as responses
    import moto.dynamodb.parsing.expressions as expressions
    from moto.dynamodb.comparisons import ConditionExpressionParser

    from rtp_cli.local import speedups

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
    monkeypatch.setattr(responses, "method_names_from_class", responses.method_names_from_class)
    lex = ConditionExpressionParser.__dict__["_lex_condition_expression"]
    monkeypatch.setattr(ConditionExpressionParser, "_lex_condition_expression", lex)
    monkeypatch.setattr(parser, "make", parser.__dict__["make"])
    speedups.patch_moto_speedups()
    assert responses.method_names_from_class is speedups._method_names_once
    assert ConditionExpressionParser._lex_condition_expression is speedups._lex_once
    assert parser.make.__func__ is speedups._update_tree_once
    assert speedups._moto_lex is not speedups._lex_once
    assert speedups._moto_update_make is not speedups._update_tree_once
    return speedups


def test_moto_s_handlers_are_listed_once_per_class_with_moto_s_answer(expression_speedups: Any) -> None:
    """If this fails, moto's `call_action` no longer lists a handler's methods with
    `method_names_from_class` (speedups._method_names_once stands in for it): re-aim or drop it."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.logs.responses import LogsResponse
    from moto.s3.responses import S3Response
    from moto.sqs.responses import SQSResponse

    speedups = expression_speedups
    speedups._method_names.clear()
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).list_tables()
    assert DynamoHandler in speedups._method_names  # call_action asked the memo
    for handler in (DynamoHandler, SQSResponse, S3Response, LogsResponse):
        names = speedups._method_names_once(handler)
        assert names == speedups._moto_method_names(handler)
        names.append("mutated by a caller")
        assert "mutated by a caller" not in speedups._method_names_once(handler)


_condition_tokens = st.sampled_from(
    [
        "attribute_exists(pk)", "attribute_not_exists(#l)", "NOT", "contains(#c, :m)", "AND", "OR", "(",
        ")", "#l", "<", "<=", "<>", "=", ">=", ":now", "size(#a)", "a.b[1]", "BETWEEN", "IN", ",",
        "begins_with(#a, :p)", "attribute_type(#a, :t)", "  ", "pk", "x-y_z", "!", "[", "@",
    ]
)  # fmt: skip
_conditions = st.one_of(
    st.lists(_condition_tokens, max_size=12).map(" ".join),
    st.lists(_condition_tokens, max_size=12).map("".join),
    st.text(max_size=20),
)


def _lexed(lex: Any, expression: str) -> Any:
    from moto.dynamodb.comparisons import ConditionExpressionParser

    try:
        return list(lex(ConditionExpressionParser(expression, {}, {})))
    except Exception as error:
        return type(error).__name__, str(error)


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # it installs the same patch every time
)
@given(expression=_conditions)
def test_condition_expressions_are_lexed_exactly_as_moto_lexes_them(
    expression: str, expression_speedups: Any
) -> None:
    """If this fails, moto's ConditionExpressionParser lexer changed (speedups._lex_once hands out its
    tokens once per expression): align _lex_once with it, or drop the patch."""
    speedups = expression_speedups
    expected = _lexed(speedups._moto_lex, expression)
    assert _lexed(speedups._lex_once, expression) == expected  # first: lexed by moto, cached
    again = _lexed(speedups._lex_once, expression)
    assert again == expected  # then: from the cache
    if isinstance(again, list) and again:
        assert again[0].children is not expected[0].children  # new nodes, not shared ones


def _tree(node: Any) -> Any:
    """An update expression's syntax tree as plain values (everything but the parent links)."""
    import moto.dynamodb.parsing.ast_nodes as ast_nodes

    if isinstance(node, ast_nodes.Node):  # type: ignore[attr-defined]
        return type(node).__name__, {k: _tree(v) for k, v in vars(node).items() if k != "parent"}
    if isinstance(node, list | tuple):
        return [_tree(child) for child in node]
    if isinstance(node, dict):
        return {k: _tree(v) for k, v in node.items()}
    return node if node is None or isinstance(node, str | int | float | bool) else repr(node)


_update_clauses = st.sampled_from(
    [
        "SET #a = :v", "SET #a = #a + :v", "SET b = if_not_exists(b, :v)", "SET l = list_append(l, :l)",
        "ADD #n :n", "ADD #s :s", "REMOVE #r", "REMOVE m.k[0]", "DELETE #s :s", "SET a.b[1] = :v",
        ",", "SET", "ADD", "=", ":v", "#a", "+", "-",
    ]
)  # fmt: skip
_updates = st.one_of(st.lists(_update_clauses, min_size=1, max_size=5).map(" ".join), st.text(max_size=16))


def _parsed(make: Any, expression: str) -> Any:
    import moto.dynamodb.parsing.expressions as expressions

    try:
        return _tree(make(expressions.UpdateExpressionParser, expression))  # type: ignore[attr-defined]
    except Exception as error:
        return type(error).__name__, str(error)


@settings(
    max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(expression=_updates)
def test_update_expressions_are_parsed_exactly_as_moto_parses_them(
    expression: str, expression_speedups: Any
) -> None:
    """If this fails, moto's UpdateExpressionParser changed (speedups._update_tree_once shares one tree
    per expression): align _update_tree_once with it, or drop the patch."""
    speedups = expression_speedups
    expected = _parsed(speedups._moto_update_make, expression)
    assert _parsed(speedups._update_tree_once, expression) == expected
    assert _parsed(speedups._update_tree_once, expression) == expected  # from the cache


UPDATES: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("SET #a = #a + :v, b = if_not_exists(b, :v) REMOVE #r", {"#a": "a", "#r": "r"}, {":v": {"N": "2"}}),
    ("ADD #n :n, #s :s REMOVE #x", {"#n": "n", "#s": "s", "#x": "x"}, {":n": {"N": "1"}, ":s": {"NS": ["7"]}}),  # noqa: E501
    ("DELETE #s :s SET l = list_append(l, :l)", {"#s": "s"}, {":s": {"NS": ["1"]}, ":l": {"L": [{"S": "x"}]}}),  # noqa: E501
]  # fmt: skip


def test_moto_never_changes_a_shared_update_expression_tree(expression_speedups: Any) -> None:
    """If this fails, moto now changes the syntax tree of an update expression while it applies it (its
    validator used to work on a deep copy), so one tree per expression string cannot be shared: drop
    speedups._update_tree_once. Also checks that UpdateItem parses through it."""
    import moto.dynamodb.parsing.expressions as expressions

    speedups = expression_speedups
    speedups._update_trees.clear()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        _table(ddb, "trees", range_key=False, items=0)
        start: dict[str, Any] = {
            "a": {"N": "1"},
            "r": {"S": "x"},
            "s": {"NS": ["1", "2"]},
            "l": {"L": []},
            "m": {"M": {}},
        }
        ddb.put_item(TableName="trees", Item={"pk": {"S": "k"}, **start})
        parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
        before = {
            expression: _tree(speedups._moto_update_make(parser, expression)) for expression, *_ in UPDATES
        }
        for _ in range(2):
            for expression, names, values in UPDATES:
                ddb.update_item(
                    TableName="trees",
                    Key={"pk": {"S": "k"}},
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
        item = ddb.get_item(TableName="trees", Key={"pk": {"S": "k"}})["Item"]
    for expression, *_ in UPDATES:
        assert _tree(speedups._update_trees[expression]) == before[expression]  # used twice, unchanged
    assert item["a"] == {"N": "5"} and item["n"] == {"N": "2"} and item["l"] == {"L": [{"S": "x"}] * 2}


# ---- BatchWriteItem (speedups._batch_write_item, any_same_json) ------------------------------------------
def test_moto_s_batch_write_item_is_the_one_speedups_copies() -> None:
    """If this fails, moto changed DynamoHandler.batch_write_item: speedups._batch_write_item is a copy of
    it (with any_same_json and one backend lookup). Copy the new one, re-apply both, then update the hash."""
    import hashlib
    import inspect

    from moto.dynamodb.responses import DynamoHandler

    from rtp_cli.local import speedups

    original = speedups._moto_batch_write_item or DynamoHandler.batch_write_item
    assert original is not speedups._batch_write_item
    source = inspect.getsource(original).encode()
    assert hashlib.sha256(source).hexdigest()[:16] == speedups.MOTO_BATCH_WRITE_ITEM_SHA256
    assert hasattr(DynamoHandler, "_contains_duplicates")  # what any_same_json stands in for


_SAME_VALUES = [
    {"S": "a"},
    {"S": "b"},
    {"B": b"\x00"},
    {"B": b"\x00\x01"},
    {"N": "1"},
    {"M": {"k": {"S": "a"}}},
    {"L": [{"B": b"\x00"}]},
]
# Few distinct first attributes and values: duplicates and near-duplicates.
_write_items: st.SearchStrategy[list[Any]] = st.lists(
    st.one_of(
        st.dictionaries(st.sampled_from(["pk", "sk", "v"]), st.sampled_from(_SAME_VALUES), max_size=3),
        st.sampled_from([[], "text", None]),
    ),
    max_size=8,
)


@settings(max_examples=examples(300), deadline=None)
@given(items=_write_items)
def test_any_same_json_finds_exactly_moto_s_duplicates(items: list[Any]) -> None:
    """If this fails, speedups.any_same_json no longer answers as moto's duplicate test."""
    from moto.dynamodb.models.utilities import dynamo_json_dump
    from moto.dynamodb.responses import DynamoHandler

    from rtp_cli.local.speedups import any_same_json

    moto_s = DynamoHandler._contains_duplicates(None, [dynamo_json_dump(item) for item in items])  # type: ignore[arg-type]
    assert any_same_json(items) == moto_s


def test_any_same_json_tells_items_apart_that_differ_after_their_first_attribute() -> None:
    from rtp_cli.local.speedups import any_same_json

    first = {"pk": {"S": "a"}, "v": {"B": b"\x00"}}
    assert any_same_json([first, {"pk": {"S": "a"}, "v": {"B": b"\x00"}}])
    assert not any_same_json([first, {"pk": {"S": "a"}, "v": {"B": b"\x01"}}])
    assert not any_same_json([first, {"v": {"B": b"\x00"}, "pk": {"S": "a"}}])  # JSON keeps the order
    assert any_same_json([[], []]) and not any_same_json([first])


def test_the_served_batch_write_item_refuses_duplicates_and_writes_as_moto_s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If this fails, the patched BatchWriteItem answers differently from moto's own (or is not installed)."""
    from moto.dynamodb.responses import DynamoHandler

    from rtp_cli.local import speedups

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(DynamoHandler, "batch_write_item", DynamoHandler.batch_write_item)
    answers = []
    for patched in (False, True):
        if patched:
            speedups.patch_moto_speedups()
            assert DynamoHandler.batch_write_item is speedups._batch_write_item
        with mock_aws():
            ddb: Any = boto3.client("dynamodb", region_name=REGION)
            _table(ddb, "bw", range_key=False, items=0)
            item = {"pk": {"S": "x"}, "blob": {"B": b"\x01\x02"}}
            refused: list[str | None] = []
            for puts in ([item, item], [item, {**item, "blob": {"B": b"\x03"}}], [item, {"pk": {"S": "y"}}]):
                try:
                    ddb.batch_write_item(RequestItems={"bw": [{"PutRequest": {"Item": i}} for i in puts]})
                    refused.append(None)
                except ddb.exceptions.ClientError as error:
                    refused.append(error.response["Error"]["Message"])
            deletes = [{"DeleteRequest": {"Key": {"pk": {"S": "y"}}}}] * 2
            with pytest.raises(ddb.exceptions.ClientError, match="contains duplicates"):
                ddb.batch_write_item(RequestItems={"bw": deletes})
            stored = sorted(str(i) for i in ddb.scan(TableName="bw")["Items"])
        answers.append((refused, stored))
    assert answers[0] == answers[1]
    assert answers[1][0][0] == "Provided list of item keys contains duplicates"
