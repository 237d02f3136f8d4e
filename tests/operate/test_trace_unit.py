"""`rtp trace`'s service in process, against moto as an AWS environment (not `local`): the X-Ray console
links from the Powertools lines' `xray_trace_id`, the latency, and any id a user can type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from rtp_pipeline.storage import ClaimCheck, Outcome, PipelineTable

from rtp_cli.operate.dlq import DeadLetterQueue
from rtp_cli.operate.logs import LogReader
from rtp_cli.trace import Sources, TraceNotFoundError, render_lines, trace_batch, trace_record, xray_link
from tests.tiers import examples

REGION = "eu-west-1"
BATCH = "01JD8X3Y5Z6A7B8C9D0E1F2G3H"
RECEIVED = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
TRACE_ID = "1-6748a000-0123456789abcdef01234567"


@pytest.fixture
def sources() -> Iterator[Sources]:
    with mock_aws():
        db = boto3.client("dynamodb", region_name=REGION)
        db.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="raw", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        logs = boto3.client("logs", region_name=REGION)
        groups = {"ingest": "/aws/lambda/ingest", "processor": "/aws/lambda/processor"}
        for group in groups.values():
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName="s")
        table = PipelineTable(db, "t")
        key = f"raw/{BATCH}.json"
        records = [{"type": "reading", "data": {"n": 0}}, {"type": "reading", "data": {"n": 1}}]
        s3.put_object(Bucket="raw", Key=key, Body=json.dumps({"records": records}).encode())
        claim = ClaimCheck(BATCH, "raw", key, "corr-1", RECEIVED.isoformat().replace("+00:00", "Z"), 2)
        table.create_batch(claim, [f"{BATCH}-0", f"{BATCH}-1"], RECEIVED + timedelta(days=7), RECEIVED)
        processed = RECEIVED + timedelta(milliseconds=1234)
        outcome = Outcome(f"{BATCH}-1", "PROCESSED", "reading", result={"n": 1})
        db.put_item(TableName="t", Item=table.record_attributes(BATCH, outcome, RECEIVED, processed))
        start = int(RECEIVED.timestamp() * 1000)
        for function, message in (("ingest", "batch accepted"), ("processor", "batch processed")):
            line = {
                "level": "INFO",
                "message": message,
                "correlation_id": "corr-1",
                "xray_trace_id": TRACE_ID,
            }
            other = {
                **line,
                "correlation_id": "corr-2",
                "xray_trace_id": "1-6748a000-ffffffffffffffffffffffff",
            }
            logs.put_log_events(
                logGroupName=groups[function],
                logStreamName="s",
                logEvents=[
                    {"timestamp": start + 10, "message": json.dumps(line)},
                    {"timestamp": start + 20, "message": json.dumps(other)},
                ],
            )
        yield Sources(
            table=table,
            s3=s3,
            bucket="raw",
            dlq=DeadLetterQueue(sqs, dlq, ""),
            logs=LogReader(logs, groups),
            region=REGION,
            is_local=False,
        )


def test_an_aws_trace_links_the_xray_trace_of_its_logs(sources: Sources) -> None:
    report = trace_record(sources, f"{BATCH}-1")
    assert report["outcome"]["status"] == "PROCESSED" and report["outcome"]["result"] == {"n": 1}
    assert report["outcome"]["latencyMs"] == 1234
    assert report["raw"]["record"] == {"type": "reading", "data": {"n": 1}}
    assert [line["function"] for line in report["logs"]] == ["ingest", "processor"]  # corr-2 left out
    assert report["xray"] == {"traceIds": [TRACE_ID], "links": [xray_link(REGION, TRACE_ID)]}
    assert xray_link(REGION, TRACE_ID) == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#xray:traces/{TRACE_ID}"
    )
    text = "\n".join(render_lines(report, "prod"))
    assert xray_link(REGION, TRACE_ID) in text and "1234 ms" in text
    # A trace is a snapshot: tracing again with the same sources shows the same lines again.
    assert trace_record(sources, f"{BATCH}-1")["logs"] == report["logs"]


def test_a_batch_in_the_dlq_and_a_record_not_processed(sources: Sources) -> None:
    dlq = sources.dlq
    assert dlq is not None
    dlq.sqs.send_message(
        QueueUrl=dlq.url,
        MessageBody=json.dumps({"batchId": BATCH, "bucket": "raw", "key": f"raw/{BATCH}.json"}),
    )
    report = trace_record(sources, f"{BATCH}-0")
    assert report["outcome"] == {"status": "NOT_PROCESSED"} and report["dlq"]["inDlq"] is True
    assert report["batch"]["status"] == "IN_PROGRESS" and report["batch"]["pending"] == 2
    assert trace_batch(sources, BATCH)["dlq"]["inDlq"] is True
    assert dlq.depth().visible == 1  # peeked, not consumed


@settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record_id=st.one_of(st.text(max_size=40), st.text(min_size=2100, max_size=2200)))
def test_any_other_id_is_not_found_never_an_error(sources: Sources, record_id: str) -> None:
    """Whatever a user types (empty, unicode, surrogates, over the key limit): TraceNotFoundError only."""
    if record_id in {f"{BATCH}-0", f"{BATCH}-1"}:
        return
    with pytest.raises(TraceNotFoundError):
        trace_record(sources, record_id)
    with pytest.raises(TraceNotFoundError):
        trace_batch(sources, record_id)


def test_a_replayed_record_shows_its_transform_version_and_replay(sources: Sources) -> None:
    from rtp_pipeline.storage import ReplayMark

    table = PipelineTable(sources.table.db, "t", transform_version="fixed-2")
    replayed = RECEIVED + timedelta(hours=1)
    outcome = Outcome(f"{BATCH}-0", "PROCESSED", "reading", result={"n": 0})
    mark = ReplayMark("replay-7", "REJECTED")
    table.db.put_item(TableName="t", Item=table.record_attributes(BATCH, outcome, RECEIVED, replayed, mark))
    report = trace_record(sources, f"{BATCH}-0")
    assert {name: report["outcome"][name] for name in ("transformVersion", "replayId", "previousStatus")} == {
        "transformVersion": "fixed-2",
        "replayId": "replay-7",
        "previousStatus": "REJECTED",
    }
    assert report["outcome"]["replayedAt"] == "2026-11-28T13:00:00.000Z"
    text = "\n".join(render_lines(report, "prod"))
    assert "transformVersion fixed-2" in text and "replayId         replay-7" in text
