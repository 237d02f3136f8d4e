"""The pipeline end to end over real HTTP on 127.0.0.1, against `rtp deploy --env local --detach`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
import requests
from botocore.credentials import Credentials

from rtp_cli.local.testing import LocalInstance, scan
from rtp_cli.local.testing import run_rtp as rtp

pytestmark = pytest.mark.e2e


def gateway_code(instance: LocalInstance, response_type: str) -> str:
    """The error code the template's GatewayResponse of this type renders (read from the template)."""
    template = json.loads(Path(instance.state["template"]).read_text(encoding="utf-8"))
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::ApiGateway::GatewayResponse" and props["ResponseType"] == response_type:
            return str(
                json.loads(
                    props["ResponseTemplates"]["application/json"].replace(
                        "$context.error.messageString", '""'
                    )
                )["error"]["code"]
            )
    raise AssertionError(f"no {response_type} gateway response in the template")


def _uid() -> str:
    return uuid.uuid4().hex[:12]


def test_signed_batch_every_record_processed(local_env: LocalInstance) -> None:
    records: list[dict[str, Any]] = [
        {"id": f"e2e-{_uid()}-{i}", "type": "Click", "data": {"n": i}, "source": "e2e"} for i in range(25)
    ]
    response = local_env.post_records(records)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["accepted"] == 25
    assert accepted["ids"] == [r["id"] for r in records]
    for record in records:
        view = local_env.wait_processed(record["id"])
        assert view["status"] == "PROCESSED"
        assert view["batchId"] == accepted["batchId"]
    batch = local_env.wait_for(
        lambda: (
            (b := local_env.request("GET", f"batches/{accepted['batchId']}").json())["status"] == "COMPLETE"
            and b
        )
    )
    assert (batch["accepted"], batch["processed"], batch["rejected"], batch["pending"]) == (25, 25, 0, 0)


def test_status_routes(local_env: LocalInstance) -> None:
    record_id = f"route-{_uid()}"
    batch_id = local_env.post_records([{"id": record_id, "type": "view", "data": {"k": "v"}}]).json()[
        "batchId"
    ]
    record = local_env.wait_processed(record_id)
    assert record["recordId"] == record_id and record["status"] == "PROCESSED"
    batch = local_env.request("GET", f"batches/{batch_id}")
    assert batch.status_code == 200 and batch.json()["ids"] == [record_id]
    missing = local_env.request("GET", f"records/no-such-{_uid()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"
    # A route the template does not define: API Gateway answers 403 Missing Authentication Token.
    unknown = local_env.request("GET", "nothing-here")
    assert unknown.status_code == 403
    assert unknown.json()["error"]["message"] == "Missing Authentication Token"
    wrong_method = local_env.request("DELETE", f"records/{record_id}")
    assert wrong_method.status_code == 403


def test_invalid_record_is_rejected_with_reason(local_env: LocalInstance) -> None:
    good, empty = f"ok-{_uid()}", f"empty-{_uid()}"
    response = local_env.post_records(
        [{"id": good, "type": "t", "data": {"a": 1}}, {"id": empty, "type": "t", "data": {}}]
    )
    assert response.status_code == 202
    rejected = local_env.wait_processed(empty)
    assert rejected["status"] == "REJECTED"
    assert "data is empty" in rejected["reason"]
    assert local_env.wait_processed(good)["status"] == "PROCESSED"


def test_idempotency_key_retry_creates_no_duplicates(local_env: LocalInstance) -> None:
    key = f"idem-{_uid()}"
    records = [{"type": "order", "data": {"total": 10 + i}} for i in range(3)]
    first = local_env.post_records(records, {"Idempotency-Key": key})
    second = local_env.post_records(records, {"Idempotency-Key": key})
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    batch_id = first.json()["batchId"]
    for record_id in first.json()["ids"]:
        local_env.wait_processed(record_id)
    time.sleep(0.5)  # give a (wrongly) enqueued duplicate the chance to be processed
    batch = local_env.request("GET", f"batches/{batch_id}").json()
    assert (batch["accepted"], batch["processed"], batch["duplicates"]) == (3, 3, 0)
    # Every page of the scan: a filter applies per 1 MB page, and the shared table holds other tests' items.
    items = [item for item in scan(local_env.target(), "REC#") if item["b"]["S"] == batch_id]  # `b`: batch
    assert len(items) == 3
    bucket = local_env.aws("s3").list_objects_v2(Bucket=local_env.output("RawBucketName"), Prefix="raw/")
    assert sum(1 for o in bucket.get("Contents", []) if batch_id in o["Key"]) == 1


def test_unsigned_and_badly_signed_requests_get_403(local_env: LocalInstance) -> None:
    body = json.dumps({"records": [{"type": "t", "data": {"a": 1}}]})
    headers = {"Content-Type": "application/json"}
    unsigned = local_env.request("POST", "records", body, headers, sign=False)
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == gateway_code(local_env, "MISSING_AUTHENTICATION_TOKEN")
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    wrong_secret = Credentials(local_env.state["access_key_id"], "not-the-secret")
    bad = local_env.request("POST", "records", body, headers, credentials=wrong_secret)
    assert bad.status_code == 403
    assert bad.json()["error"]["code"] == gateway_code(local_env, "INVALID_SIGNATURE")
    assert "signature we calculated does not match" in bad.json()["error"]["message"]
    unknown_key = local_env.request(
        "POST", "records", body, headers, credentials=Credentials("AKIAUNKNOWN", "x")
    )
    assert unknown_key.status_code == 403
    assert "security token included in the request is invalid" in unknown_key.json()["error"]["message"]


def test_stale_signature_is_refused(local_env: LocalInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    ten_minutes_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: ten_minutes_ago)
    stale = local_env.request("GET", f"records/x-{_uid()}")
    assert stale.status_code == 403
    assert stale.json()["error"]["code"] == gateway_code(local_env, "INVALID_SIGNATURE")
    assert "Signature expired" in stale.json()["error"]["message"]


def test_schema_violation_gets_400_from_the_gateway(local_env: LocalInstance) -> None:
    body = json.dumps({"records": [{"type": "t"}]})  # no data: the API Gateway model refuses it
    response = local_env.request("POST", "records", body, {"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == gateway_code(local_env, "BAD_REQUEST_BODY")
    assert error["message"] == "Invalid request body"
    assert error["requestId"] == response.headers["x-amzn-RequestId"]
    no_type = local_env.request("POST", "records", body)  # missing required Content-Type header
    assert no_type.status_code == 400
    assert "Content-Type" in no_type.json()["error"]["message"]


def test_too_large_gets_413(local_env: LocalInstance) -> None:
    # Over the configured max_body_bytes (about 2.9 MB): the ingest function refuses it.
    big = json.dumps({"records": [{"type": "t", "data": {"blob": "x" * (3_000_000 + 10)}}]})
    response = local_env.request("POST", "records", big, {"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:300]
    # Over API Gateway's hard 10 MB payload limit: the gateway refuses it before anything else.
    huge = "x" * (10 * 1024 * 1024 + 1)
    gateway = requests.post(
        local_env.url + "records", data=huge, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert gateway.status_code == 413
    assert gateway.json()["error"]["code"] == gateway_code(local_env, "REQUEST_TOO_LARGE")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_aws_sigv4_drives_the_api(local_env: LocalInstance) -> None:
    record_id = f"curl-{_uid()}"
    state = local_env.state
    completed = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "--aws-sigv4",
            f"aws:amz:{state['region']}:execute-api",
            "--user",
            f"{state['access_key_id']}:{state['secret_access_key']}",
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"records": [{"id": record_id, "type": "curl", "data": {"via": "curl"}}]}),
            local_env.url + "records",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert json.loads(completed.stdout)["ids"] == [record_id]
    assert local_env.wait_processed(record_id)["status"] == "PROCESSED"
    read = subprocess.run(
        [
            "curl",
            "-sS",
            "--aws-sigv4",
            f"aws:amz:{state['region']}:execute-api",
            "--user",
            f"{state['access_key_id']}:{state['secret_access_key']}",
            local_env.url + f"records/{record_id}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert json.loads(read.stdout)["status"] == "PROCESSED"


def test_handler_logs_land_in_the_templates_log_groups(local_env: LocalInstance) -> None:
    response = local_env.post_records([{"id": f"log-{_uid()}", "type": "t", "data": {"a": 1}}])
    request_id = response.headers["x-amzn-RequestId"]
    logs = local_env.aws("logs")

    def lines(group: str) -> list[str]:
        found: list[str] = []
        for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
            events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
            found.extend(e["message"] for e in events)
        return found

    def ingest_line() -> Any:
        return [line for line in lines(local_env.output("IngestLogGroup")) if request_id in line]

    matched = local_env.wait_for(ingest_line, timeout=10)
    entry = json.loads(next(line for line in matched if line.startswith("{")))
    assert entry["correlation_id"] == request_id and entry["service"] == "ingest"
    assert local_env.wait_for(
        lambda: [line for line in lines(local_env.output("ProcessorLogGroup")) if request_id in line],
        timeout=10,
    )
    access = local_env.wait_for(
        lambda: [line for line in lines(local_env.output("ApiAccessLogGroup")) if request_id in line]
    )
    assert json.loads(access[0])["status"] == "202"


def test_rtp_status_against_local(local_env: LocalInstance) -> None:
    completed = rtp(["status", "--env", "local", "--json"], local_env.state_dir)
    report = json.loads(completed.stdout)
    assert report["apiUrl"] == local_env.url
    assert {q["label"] for q in report["queues"]} == {"work queue", "dead-letter queue"}
    assert report["alarms"] is None and "only in AWS" in report["alarmsNote"]
    table = rtp(["status", "--env", "local"], local_env.state_dir)
    assert "dead-letter queue" in table.stdout and "TableName" in table.stdout


# ---- the tuned instance: template changes, injected faults, throttling --------------------------------
def test_tuned_template_is_followed(tuned_env: LocalInstance) -> None:
    sqs = tuned_env.aws("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=tuned_env.output("WorkQueueUrl"), AttributeNames=["All"])[
        "Attributes"
    ]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 2
    assert attrs["VisibilityTimeout"] == "1"


def test_transient_fault_is_retried_then_processed(tuned_env: LocalInstance) -> None:
    record_id = f"flaky-{_uid()}"
    response = tuned_env.post_records([{"id": record_id, "type": "t", "data": {"fail_times": 1}}])
    assert response.status_code == 202
    view = tuned_env.wait_processed(record_id, timeout=30)
    assert view["status"] == "PROCESSED"
    from tests.fixtures.faulty_transform import attempts

    assert attempts(record_id) == 2  # failed once, retried in the same invocation, then processed
    batch = tuned_env.request("GET", f"batches/{response.json()['batchId']}").json()
    assert (batch["accepted"], batch["processed"], batch["duplicates"]) == (1, 1, 0)


def test_a_call_the_role_does_not_allow_is_logged_by_the_runtime(tuned_env: LocalInstance) -> None:
    """Locally every call succeeds (one set of credentials); the runtime checks each invocation's calls
    against the function's role in the template and logs what AWS would refuse."""
    record_id = f"iam-{_uid()}"
    bucket = tuned_env.output("RawBucketName")
    response = tuned_env.post_records([{"id": record_id, "type": "t", "data": {"write_to_bucket": bucket}}])
    assert response.status_code == 202
    assert tuned_env.wait_processed(record_id, timeout=30)["status"] == "PROCESSED"
    logs = tuned_env.aws("logs")
    expected = f"s3:PutObject on arn:aws:s3:::{bucket}/elsewhere/{record_id}"

    def refused() -> list[str]:
        events = logs.filter_log_events(logGroupName=tuned_env.output("ProcessorLogGroup"))["events"]
        return [
            e["message"] for e in events if "IAM: in AWS this function's role would refuse" in e["message"]
        ]

    lines = tuned_env.wait_for(lambda: [m for m in refused() if expected in m], timeout=10, interval=0.3)
    assert len(lines) == 1, lines
    # The function's own calls (reading raw/, writing the table) are allowed: only this one is refused.
    assert all(expected in line or record_id not in line for line in refused())


def test_persistent_fault_goes_to_dlq_after_max_receive_count(tuned_env: LocalInstance) -> None:
    record_id = f"poison-{_uid()}"
    batch_id = tuned_env.post_records([{"id": record_id, "type": "t", "data": {"poison": True}}]).json()[
        "batchId"
    ]
    sqs = tuned_env.aws("sqs")
    dlq = tuned_env.output("DeadLetterQueueUrl")

    def in_dlq() -> list[dict[str, Any]]:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        return [m for m in messages if batch_id in m["Body"]]

    messages = tuned_env.wait_for(in_dlq, timeout=30, interval=0.3)
    from rtp_pipeline.processing import RetryPolicy

    from tests.fixtures.faulty_transform import attempts

    # Each delivery tries the record RetryPolicy.attempts times; the tuned template's maxReceiveCount is 2.
    assert attempts(record_id) == RetryPolicy().attempts * 2
    assert tuned_env.record_status(record_id) is None  # never stored as processed
    assert json.loads(messages[0]["Body"])["batchId"] == batch_id
    status = json.loads(rtp(["status", "--env", "local", "--json"], tuned_env.state_dir).stdout)
    dead = next(q for q in status["queues"] if q["label"] == "dead-letter queue")
    assert dead["visible"] >= 1 and dead["oldest_age_seconds"] is not None
    assert status["healthy"] is False


def test_over_the_throttle_gets_429(tuned_env: LocalInstance) -> None:
    time.sleep(1.2)  # let the bucket refill after earlier tests
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(
                lambda _: tuned_env.request("GET", f"records/t-{_uid()}", retry_throttled=False), range(30)
            )
        )
    elapsed = time.monotonic() - started
    throttled = [r for r in responses if r.status_code == 429]
    served = [r for r in responses if r.status_code != 429]
    assert throttled, [r.status_code for r in responses]
    assert throttled[0].json()["error"]["code"] == gateway_code(tuned_env, "THROTTLED")
    assert len(served) <= 5 + 5 * elapsed + 1  # burst 5 + 5 requests/s, as the tuned stage says


def test_dynamodb_transactions_roll_back_exactly(local_env: LocalInstance) -> None:
    """The emulation's faster transaction snapshot (rtp_cli.local.emulation) keeps all-or-nothing writes."""
    ddb = local_env.aws("dynamodb")
    table = local_env.output("TableName")
    a, b = f"TXTEST#{_uid()}", f"TXTEST#{_uid()}"
    ddb.put_item(TableName=table, Item={"pk": {"S": a}, "v": {"N": "1"}, "tags": {"L": [{"S": "x"}]}})
    failing = [
        {"Update": {"TableName": table, "Key": {"pk": {"S": a}}, "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": b}, "v": {"N": "9"}}}},
        {"Put": {"TableName": table, "Item": {"pk": {"S": a + "-other"}},
                 "ConditionExpression": "attribute_exists(pk)"}},
    ]  # fmt: skip
    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(TransactItems=failing)
    assert ddb.get_item(TableName=table, Key={"pk": {"S": a}})["Item"]["v"] == {"N": "1"}
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": b}})
    ddb.transact_write_items(TransactItems=failing[:2])
    assert ddb.get_item(TableName=table, Key={"pk": {"S": a}})["Item"]["v"] == {"N": "2"}
    assert ddb.get_item(TableName=table, Key={"pk": {"S": b}})["Item"]["v"] == {"N": "9"}


def test_function_timeout_is_enforced(tuned_env: LocalInstance) -> None:
    """The tuned processor Timeout (2 s) kills an invocation that runs longer; SQS redelivers the message."""
    record_id = f"slow-{_uid()}"
    response = tuned_env.post_records([{"id": record_id, "type": "t", "data": {"sleep_first": 4}}])
    assert response.status_code == 202
    assert tuned_env.wait_processed(record_id, timeout=30)["status"] == "PROCESSED"
    logs = tuned_env.aws("logs")
    group = tuned_env.output("ProcessorLogGroup")

    def timed_out() -> bool:
        for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
            events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
            if any("Task timed out after 2.00 seconds" in e["message"] for e in events):
                return True
        return False

    assert tuned_env.wait_for(timed_out, timeout=10)
    from tests.fixtures.faulty_transform import attempts

    assert attempts(record_id) >= 2  # the timed-out attempt, then the redelivery that succeeded


def test_the_runtime_reports_the_emulation_s_cpu_per_aws_operation(local_env: LocalInstance) -> None:
    """`/_rtp/aws-calls` (what bench/local_end_to_end.py prints per record): every call the pipeline made,
    with the emulation's CPU answering it; signed like the API."""
    from bench.local_end_to_end import aws_calls

    before = aws_calls(local_env.state_dir)
    assert before["dynamodb:CreateTable"]["calls"] >= 1  # provisioning went through the same endpoint
    accepted = local_env.post_records([{"type": "t", "data": {"n": n}} for n in range(3)]).json()
    local_env.wait_for(
        lambda: local_env.request("GET", f"batches/{accepted['batchId']}").json()["status"] == "COMPLETE"
    )
    after = aws_calls(local_env.state_dir)
    grew = {name for name, entry in after.items() if entry["calls"] > before.get(name, {}).get("calls", 0)}
    assert {"s3:PUT", "sqs:SendMessage", "sqs:ReceiveMessage"} <= grew  # ingest and the event source mapping
    assert any(name.startswith("dynamodb:") for name in grew)  # the processor's writes
    assert all(entry["cpu_seconds"] > 0 and entry["request_bytes"] >= 0 for entry in after.values())
    base = local_env.url.split("/", 3)
    assert requests.get(f"{base[0]}//{base[2]}/_rtp/aws-calls", timeout=10).status_code == 403  # unsigned
