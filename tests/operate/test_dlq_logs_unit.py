"""`rtp dlq` and `rtp logs` services against moto (SQS, DynamoDB, CloudWatch Logs), and the native
message-move path with botocore's Stubber (moto does not implement StartMessageMoveTask)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from rtp_cli.operate.dlq import DeadLetterQueue
from rtp_cli.operate.logs import LogReader, log_groups, parse_event, parse_since, render

REGION = "us-east-1"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        db = boto3.client("dynamodb", region_name=REGION)
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        work = sqs.create_queue(
            QueueName="work",
            Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})},
        )["QueueUrl"]
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield {"sqs": sqs, "db": db, "dlq": dlq, "work": work}


def claim(batch_id: str) -> str:
    return json.dumps(
        {
            "batchId": batch_id,
            "bucket": "raw",
            "key": f"raw/2025/01/01/00/{batch_id}.json",
            "correlationId": f"c-{batch_id}",
            "receivedAt": "2025-01-01T00:00:00.000Z",
            "recordCount": 3,
        }
    )


def fill(aws: dict[str, Any], count: int) -> list[str]:
    ids = [f"BATCH{n:03d}" for n in range(count)]
    for batch_id in ids:
        aws["sqs"].send_message(QueueUrl=aws["dlq"], MessageBody=claim(batch_id))
    return ids


def test_peek_shows_what_messages_point_to_without_consuming(aws: dict[str, Any]) -> None:
    fill(aws, 3)
    aws["db"].put_item(
        TableName="t",
        Item={
            "pk": {"S": "BATCH#BATCH001"},
            "lastError": {"S": "KeyError: 'price'"},
            "accepted": {"N": "3"},
            "processed": {"N": "0"},
        },
    )
    dlq = DeadLetterQueue(aws["sqs"], aws["dlq"], aws["work"], aws["db"], "t")
    messages = dlq.peek(10)
    assert sorted(m.batch_id for m in messages) == ["BATCH000", "BATCH001", "BATCH002"]
    failing = next(m for m in messages if m.batch_id == "BATCH001")
    assert failing.last_error == "KeyError: 'price'" and failing.key.endswith("BATCH001.json")
    assert failing.batch_state == {"accepted": 3, "processed": 0} and failing.record_count == 3
    assert "no batch item" in next(m for m in messages if m.batch_id == "BATCH000").last_error
    # Not consumed: all still visible, immediately.
    depth = dlq.depth()
    assert depth.visible == 3 and depth.in_flight == 0 and depth.oldest_age_seconds is not None
    assert len(dlq.peek(10)) == 3


def test_copy_redrive_moves_everything_and_respects_max(aws: dict[str, Any]) -> None:
    fill(aws, 25)
    dlq = DeadLetterQueue(aws["sqs"], aws["dlq"], aws["work"])
    dry = dlq.redrive(max_messages=7, dry_run=True)
    assert dry.dry_run and dry.would_move == 7 and dlq.depth().visible == 25
    first = dlq.redrive(max_messages=7)
    assert first.method == "copy" and first.moved == 7
    assert dlq.depth().visible == 18 and dlq.depth(aws["work"]).visible == 7
    rest = dlq.redrive()  # moto lacks StartMessageMoveTask: falls back to the copy loop
    assert rest.method == "copy" and rest.moved == 18 and not rest.errors
    assert dlq.depth().visible == 0 and dlq.depth().in_flight == 0
    bodies = []
    while True:
        got = aws["sqs"].receive_message(QueueUrl=aws["work"], MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies += [json.loads(m["Body"])["batchId"] for m in got]
        for m in got:
            aws["sqs"].delete_message(QueueUrl=aws["work"], ReceiptHandle=m["ReceiptHandle"])
    assert sorted(bodies) == [f"BATCH{n:03d}" for n in range(25)]  # every message, exactly once


def test_copy_redrive_sends_a_replays_message_back_to_the_replay_queue(aws: dict[str, Any]) -> None:
    """The replay queue dead-letters into the same queue: its messages go back to it, not to the live
    queue, where live traffic would wait behind a replay."""
    replay = aws["sqs"].create_queue(QueueName="replay")["QueueUrl"]
    fill(aws, 2)
    replayed = json.loads(claim("BATCH900")) | {"replay": {"id": "r-1", "status": "REJECTED"}}
    aws["sqs"].send_message(QueueUrl=aws["dlq"], MessageBody=json.dumps(replayed))
    dlq = DeadLetterQueue(aws["sqs"], aws["dlq"], aws["work"], replay_url=replay)
    assert dlq.redrive(native=False).moved == 3
    assert (dlq.depth(aws["work"]).visible, dlq.depth(replay).visible) == (2, 1)
    [back] = aws["sqs"].receive_message(QueueUrl=replay)["Messages"]
    assert json.loads(back["Body"])["replay"]["id"] == "r-1"


def test_copy_redrive_never_deletes_what_it_could_not_send(aws: dict[str, Any]) -> None:
    fill(aws, 3)
    dlq = DeadLetterQueue(aws["sqs"], aws["dlq"], aws["work"] + "-gone")
    result = dlq.redrive(native=False)
    assert result.moved == 0 and result.errors and "send to source failed" in result.errors[0]
    assert dlq.depth().visible == 3  # released at once, nothing lost


def test_purge(aws: dict[str, Any]) -> None:
    fill(aws, 4)
    dlq = DeadLetterQueue(aws["sqs"], aws["dlq"], aws["work"])
    assert dlq.purge() == 4
    assert dlq.depth().visible == 0


def test_native_move_task_path_with_stubber() -> None:
    sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    dlq_url, work_url = (
        "https://sqs.us-east-1.amazonaws.com/123456789012/dlq",
        "https://sqs.us-east-1.amazonaws.com/123456789012/work",
    )
    dlq_arn = "arn:aws:sqs:us-east-1:123456789012:dlq"
    stub = Stubber(sqs)
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"QueueArn": dlq_arn}},
        {"QueueUrl": dlq_url, "AttributeNames": ["QueueArn"]},
    )
    stub.add_response(
        "get_queue_attributes",
        {"Attributes": {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}},
        {
            "QueueUrl": dlq_url,
            "AttributeNames": [
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "RedrivePolicy",
            ],
        },
    )
    stub.add_response(
        "start_message_move_task",
        {"TaskHandle": "handle-1"},
        {"SourceArn": dlq_arn},  # no destination: each message back to the queue it came from
    )
    running = {
        "TaskHandle": "handle-1",
        "Status": "RUNNING",
        "SourceArn": dlq_arn,
        "ApproximateNumberOfMessagesMoved": 4,
    }
    done = {**running, "Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 9}
    stub.add_response(
        "list_message_move_tasks", {"Results": [running]}, {"SourceArn": dlq_arn, "MaxResults": 10}
    )
    stub.add_response(
        "list_message_move_tasks", {"Results": [done]}, {"SourceArn": dlq_arn, "MaxResults": 10}
    )
    sleeps: list[float] = []
    with stub:
        result = DeadLetterQueue(sqs, dlq_url, work_url).redrive(sleep=sleeps.append)
    stub.assert_no_pending_responses()
    assert (result.method, result.task_handle, result.status, result.moved) == (
        "native",
        "handle-1",
        "COMPLETED",
        9,
    )
    assert sleeps == [1.0]


def test_native_move_task_failure_is_reported() -> None:
    sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(sqs)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:1:dlq"}})
    stub.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "0"}})
    stub.add_response("start_message_move_task", {"TaskHandle": "h"})
    stub.add_response(
        "list_message_move_tasks",
        {
            "Results": [
                {"TaskHandle": "h", "Status": "FAILED", "FailureReason": "AWS.SimpleQueueService.KMS denied"}
            ]
        },
    )
    with stub:
        result = DeadLetterQueue(sqs, "https://q/dlq", "https://q/work").redrive(sleep=lambda _: None)
    assert result.status == "FAILED" and result.errors == ["AWS.SimpleQueueService.KMS denied"]


def test_native_unsupported_falls_back_to_copy_but_other_errors_do_not() -> None:
    sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(sqs)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": "arn:aws:sqs:us-east-1:1:dlq"}})
    stub.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "0"}})
    stub.add_client_error("start_message_move_task", "AccessDenied", "not allowed")
    with stub, pytest.raises(Exception, match="AccessDenied"):
        DeadLetterQueue(sqs, "https://q/dlq", "https://q/work").redrive()


# --- logs -----------------------------------------------------------------------------------------------


def powertools(level: str, message: str, correlation_id: str | None, service: str, **extra: Any) -> str:
    return json.dumps(
        {
            "level": level,
            "location": "handler:1",
            "message": message,
            "timestamp": "x",
            "service": service,
            "correlation_id": correlation_id,
            **extra,
        }
    )


def test_logs_follow_one_request_across_functions() -> None:
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        now = int(time.time() * 1000)
        events = {
            "/g/ingest": [
                powertools("INFO", "batch accepted", "req-1", "ingest", batch_id="B1"),
                powertools("INFO", "batch accepted", "req-2", "ingest"),
                "START RequestId: abc",
            ],
            "/g/processor": [
                powertools("ERROR", "batch failed; SQS will redeliver it", "req-1", "processor"),
                powertools("INFO", "batch processed", "req-2", "processor"),
            ],
            "/g/query": [powertools("INFO", "get", "req-3", "query")],
        }
        for group, messages in events.items():
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName="s")
            logs.put_log_events(
                logGroupName=group,
                logStreamName="s",
                logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)],
            )
        outputs = {
            "IngestLogGroup": "/g/ingest",
            "ProcessorLogGroup": "/g/processor",
            "QueryLogGroup": "/g/query",
        }
        reader = LogReader(logs, log_groups(outputs))
        start = parse_event("x", {"timestamp": now - 60_000}).time
        lines = reader.read(start, correlation_id="req-1")
        assert [(line.function, line.message) for line in lines] == [
            ("ingest", "batch accepted"),
            ("processor", "batch failed; SQS will redeliver it"),
        ]
        assert LogReader(logs, log_groups(outputs, "ingest")).read(start, text="START")[0].fields is None
        everything = LogReader(logs, log_groups(outputs)).read(start)
        assert len(everything) == 6
        rendered = render(lines[1])
        assert (
            "ERROR" in rendered and "bold red" in rendered and "req-1" in rendered and "processor" in rendered
        )
        assert "batch_id=" in render(lines[0])
        # follow: the second poll prints only what is new
        printed: list[str] = []
        polls = {"n": 0}

        def stop() -> bool:
            polls["n"] += 1
            if polls["n"] == 1:
                logs.put_log_events(
                    logGroupName="/g/ingest",
                    logStreamName="s",
                    logEvents=[
                        {"timestamp": now + 10, "message": powertools("INFO", "late", "req-1", "ingest")}
                    ],
                )
            return polls["n"] >= 2

        LogReader(logs, log_groups(outputs)).follow(
            start,
            lambda ln: printed.append(ln.message),
            correlation_id="req-1",
            interval=0.01,
            should_stop=stop,
        )
        assert printed == ["batch accepted", "batch failed; SQS will redeliver it", "late"]


def test_parse_since_and_unknown_function() -> None:
    assert parse_since("10m").total_seconds() == 600 and parse_since("2h").total_seconds() == 7200
    with pytest.raises(ValueError, match="30s, 10m"):
        parse_since("ten minutes")
    with pytest.raises(ValueError, match="unknown function"):
        log_groups({"IngestLogGroup": "g"}, "transformer")
