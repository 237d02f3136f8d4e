"""Adversarial end to end, against a real `rtp deploy --env local --detach`: raw HTTP/1.1 framings, a
120-connection burst, records generated from the record schema, and the AWS emulation's credentials.

The generated records are restricted to what the pipeline already stores today (real dates, valid
Unicode, shallow `data`, no empty keys, numbers DynamoDB holds); the handler-side fix of issue 8 widens
what is accepted, and this test with it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from rtp_cli.local.testing import LocalInstance, scan

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "handlers" / "rtp_pipeline" / "record.schema.json").read_text())


# ---- raw HTTP ---------------------------------------------------------------------------------------
def _signed_lines(instance: LocalInstance, method: str, path: str, body: bytes) -> list[str]:
    url = instance.url + path
    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(instance.credentials, "execute-api", instance.region).add_auth(request)
    parts = urlsplit(url)
    lines = [f"{method} {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    return lines + [
        f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in ("host", "content-length")
    ]


def _wire(lines: list[str], body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-answer")
        rest += chunk
    buffer[:] = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


def _connect(instance: LocalInstance) -> socket.socket:
    parts = urlsplit(instance.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=20)


BODY = b'{"records":[{"type":"framing","data":{"n":1}}]}'


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["Content-Length: abc"], "bad Content-Length"),
        (["Content-Length: -1"], "bad Content-Length"),
        ([f"Content-Length: {len(BODY)}", f"Content-Length: {len(BODY)}"], "more than one Content-Length"),
        ([f"Content-Length: {len(BODY)}", "Content-Length: 2"], "conflicting Content-Length"),
        ([f"Content-Length: {len(BODY)}", "Transfer-Encoding: chunked"], "both Content-Length and Transfer"),
    ],
    ids=["abc", "negative", "doubled", "conflicting", "cl-and-te"],
)
def test_broken_framing_is_a_json_400_then_close(
    local_env: LocalInstance, extra: list[str], reason: str
) -> None:
    started = time.monotonic()
    with _connect(local_env) as sock:
        sock.sendall(_wire(_signed_lines(local_env, "POST", "records", BODY) + extra, BODY))
        buffer = bytearray()
        status, headers, body = _response(sock, buffer)
        assert sock.recv(65536) == b"" and buffer == bytearray()  # closed, nothing after the answer
    assert status == 400 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "CLIENT_ERROR" and reason in error["message"] and error["requestId"]
    assert time.monotonic() - started < 5


def test_chunked_body_is_stored_and_the_connection_stays_usable(local_env: LocalInstance) -> None:
    record_id = f"chunked-{uuid.uuid4().hex[:10]}"
    body = json.dumps({"records": [{"id": record_id, "type": "framing", "data": {"chunked": True}}]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:7], body[7:])) + b"0\r\n\r\n"
    with _connect(local_env) as sock:
        sock.sendall(
            _wire([*_signed_lines(local_env, "POST", "records", body), "Transfer-Encoding: chunked"], chunked)
        )
        buffer = bytearray()
        status, _, answer = _response(sock, buffer)
        assert status == 202, answer
        assert json.loads(answer)["ids"] == [record_id]
        sock.sendall(
            _wire([*_signed_lines(local_env, "GET", f"records/{record_id}", b""), "Content-Length: 0"])
        )
        status, _, answer = _response(sock, buffer)
        assert status in (200, 404), answer  # 404 until processed: either way a clean JSON answer
        json.loads(answer)
    assert local_env.wait_processed(record_id)["status"] == "PROCESSED"


def test_garbage_gets_json_not_html(local_env: LocalInstance) -> None:
    with _connect(local_env) as sock:
        sock.sendall(b"GET /\r\n\r\n")
        status, headers, body = _response(sock, bytearray())
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "CLIENT_ERROR"


def test_120_simultaneous_signed_posts_are_answered_never_reset(local_env: LocalInstance) -> None:
    """Before: 21-84 of 120 connections were reset (listen backlog 5). Now each gets a JSON answer: 202,
    or 429 from the stage throttle or the local API's in-flight bound; every 202 is processed."""
    count, run = 120, uuid.uuid4().hex[:8]
    barrier = threading.Barrier(count)
    outcomes: Counter[Any] = Counter()
    accepted: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        record_id = f"burst-{run}-{index}"
        body = json.dumps({"records": [{"id": record_id, "type": "burst", "data": {"i": index}}]}).encode()
        raw = _wire(
            [*_signed_lines(local_env, "POST", "records", body), f"Content-Length: {len(body)}"], body
        )
        barrier.wait()
        try:
            with _connect(local_env) as sock:
                sock.settimeout(60)
                sock.sendall(raw)
                status, headers, answer = _response(sock, bytearray())
            document = json.loads(answer)
            assert headers["content-type"] == "application/json"
            assert status == 202 or document["error"]["code"] == "THROTTLED"
            outcome: Any = status
        except Exception as error:
            outcome = f"{type(error).__name__}: {error}"
        with lock:
            outcomes[outcome] += 1
            if outcome == 202:
                accepted.append(record_id)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(outcomes) <= {202, 429}, outcomes
    assert outcomes[202] >= 50, outcomes
    for record_id in accepted:
        assert local_env.wait_processed(record_id, timeout=60)["status"] == "PROCESSED"


# ---- generated records -----------------------------------------------------------------------------------
# Clean content, by construction: non-empty keys, text without lone surrogates (hypothesis' default
# alphabet), numbers DynamoDB holds, shallow nesting. A request gets at most one harm from HARMS below.
STORABLE_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False).map(lambda f: round(f, 6))
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=4)
    ),
    max_leaves=15,
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    """Real instants in every form the schema's pattern allows (separators, fractions, Z/z/offsets)."""
    when = draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
    text = when.strftime("%Y-%m-%d") + draw(st.sampled_from(["T", "t", " "])) + when.strftime("%H:%M:%S")
    if draw(st.booleans()):
        text += "." + str(when.microsecond).rjust(6, "0")[: draw(st.integers(1, 6))]
    hours, minutes = draw(st.integers(-12, 14)), draw(st.sampled_from([0, 30, 45]))
    zone = f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:{minutes:02d}"
    return text + draw(st.sampled_from(["Z", "z", zone]))


def schema_strategy(schema: dict[str, Any], name: str = "") -> st.SearchStrategy[Any]:
    """Values valid against `schema`. Strings (patterns, lengths) come from hypothesis-jsonschema, except
    `timestamp`, whose pattern also admits impossible dates (drawn as real instants here); objects are
    composed here, because hypothesis-jsonschema 0.23.1 cannot draw objects under hypothesis 6.170
    (AttributeError: 'many' object has no attribute 'more'). Object keywords not handled here fail."""
    if name == "timestamp":
        return rfc3339()
    if schema.get("type") != "object":
        return from_schema(schema)
    handled = {"$schema", "title", "description", "type", "required", "properties", "additionalProperties"}
    assert set(schema) <= handled, sorted(set(schema) - handled)
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:  # a free-form object (`data`)
        return st.dictionaries(st.text(min_size=1, max_size=8), STORABLE_JSON, max_size=6)
    assert schema.get("additionalProperties") is False  # so fixed_dictionaries draws every allowed shape
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {key: schema_strategy(sub, key) for key, sub in properties.items() if key in required},
        optional={key: schema_strategy(sub, key) for key, sub in properties.items() if key not in required},
    )


RECORDS: st.SearchStrategy[Any] = schema_strategy(SCHEMA)

# Schema-valid content that the store cannot hold: the API must refuse the request naming the record.
HARMS: dict[str, Any] = {
    "impossible date": ("timestamp", "2024-02-30T00:00:00Z"),
    "hour 24": ("timestamp", "2024-01-01T24:00:00Z"),
    "non-ASCII digits": ("timestamp", "\u0662\u0660\u0662\u0664-01-01T00:00:00Z"),
    "lone surrogate in data": ("data", {"text": "\ud800"}),
    "lone surrogate in source": ("source", "src-\udfff"),
    "empty key": ("data", {"": 1}),
    "nested 40 deep": ("data", {"deep": json.loads("[" * 40 + "]" * 40)}),
    "number past 38 digits": ("data", {"n": 12345678901234567890123456789012345678901}),
}


def test_generated_records_are_all_stored_and_read_back(local_env: LocalInstance) -> None:
    """Batches of schema-generated records: every request is a 202 or a 4xx in the documented JSON
    shape; every accepted record ends PROCESSED or REJECTED, reads back with 200, and is stored once."""
    run = uuid.uuid4().hex[:8]
    accepted: dict[str, dict[str, Any]] = {}
    refused: list[tuple[int, dict[str, Any]]] = []
    sent = 0

    @settings(
        max_examples=10,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    @given(
        st.lists(RECORDS, min_size=25, max_size=40),
        st.none() | st.tuples(st.sampled_from(sorted(HARMS)), st.integers(min_value=0, max_value=24)),
    )
    def post(records: list[dict[str, Any]], harm: tuple[str, int] | None) -> None:
        nonlocal sent
        for record in records:
            record["id"] = f"gen-{run}-{sent}"  # unique: duplicates are the idempotency tests' subject
            sent += 1
        if harm is not None:
            field_name, value = HARMS[harm[0]]
            records[harm[1]][field_name] = value
        response = local_env.post_records(records)
        document = response.json()
        if harm is None:
            assert response.status_code == 202, (response.status_code, document)
            assert document["accepted"] == len(records) and document["ids"] == [r["id"] for r in records]
            accepted.update({record["id"]: record for record in records})
        else:
            assert response.status_code == 400, (harm, response.status_code, document)
            assert set(document["error"]) >= {"code", "message", "details", "requestId"}
            assert document["error"]["code"] == "VALIDATION_ERROR", (harm, document)
            # The function names the record; what the request model itself refuses (the timestamp
            # pattern's ASCII digits) is API Gateway's "Invalid request body", which carries no details.
            named = any(d.get("index") == harm[1] for d in document["error"]["details"])
            by_model = document["error"]["message"] == "Invalid request body"
            assert named or by_model, (harm, document)
            refused.append((response.status_code, document))

    post()
    assert sent >= 200, sent  # a few hundred records
    # Both paths ran: at least one clean request stored, at least one harmed request refused.
    assert len(accepted) >= 25 and refused, (len(accepted), len(refused))
    statuses: Counter[str] = Counter()
    for record_id in accepted:
        view = local_env.wait_processed(record_id, timeout=120)
        assert view["recordId"] == record_id and view["status"] in ("PROCESSED", "REJECTED"), view
        statuses[view["status"]] += 1
    items = scan(local_env.target(), f"REC#gen-{run}-")
    assert sorted(item["pk"]["S"] for item in items) == sorted(f"REC#{i}" for i in accepted)  # once each
    assert statuses["PROCESSED"] > 0, statuses
    print(f"generated {sent} records: {len(accepted)} accepted, {dict(statuses)}, {len(refused)} refused")


# ---- the AWS emulation answers only the local keys --------------------------------------------------------
@pytest.mark.parametrize("who", ["unknown key", "wrong secret"])
def test_the_emulation_refuses_other_credentials(local_env: LocalInstance, who: str) -> None:
    import boto3

    key = "AKIAOTHERPROCESS0000" if who == "unknown key" else local_env.state["access_key_id"]
    make: Any = boto3.client
    for service, call in (
        ("dynamodb", lambda c: c.scan(TableName=local_env.output("TableName"), Limit=1)),
        ("sqs", lambda c: c.receive_message(QueueUrl=local_env.output("WorkQueueUrl"), WaitTimeSeconds=0)),
        ("s3", lambda c: c.list_objects_v2(Bucket=local_env.output("RawBucketName"), MaxKeys=1)),
    ):
        client = make(
            service,
            endpoint_url=local_env.state["aws_endpoint_url"],
            region_name=local_env.region,
            aws_access_key_id=key,
            aws_secret_access_key="not-the-local-secret-0000000000000000000",
        )
        with pytest.raises(ClientError) as refused:
            call(client)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, service
    # ... and the local keys still work (what every other test here relies on too)
    assert "Items" in local_env.aws("dynamodb").scan(TableName=local_env.output("TableName"), Limit=1)
