"""`rtp trace` against the local runtime: the service (`trace_record`, `trace_batch`) on the stack's own
table, bucket, DLQ and log groups, and the real CLI (a subprocess) for `--json` and the exit codes.

A processed record and a rejected one share one batch (an API-assigned id and a client id); a dead-lettered
batch comes from the fault-switch transform of `incident_stack` (maxReceiveCount 2, visibility 3 s), whose
message this test deletes from the DLQ afterwards so the DLQ incident test still starts from an empty DLQ.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rtp_cli.local.testing import LocalInstance as LocalStack
from rtp_cli.local.testing import api_client as api
from rtp_cli.local.testing import delete_dead_letter, wait_until
from rtp_cli.operate.api_client import encode
from rtp_cli.trace import TraceNotFoundError, sources_for, trace_batch, trace_record

pytestmark = pytest.mark.e2e
Rtp = Callable[..., subprocess.CompletedProcess[str]]
UNKNOWN_BATCH = "01ARZ3NDEKTSV4RRFFQ69G5FAV"  # a well-formed ULID no batch has


@pytest.fixture(scope="module")
def processed_batch(main_stack: LocalStack) -> dict[str, Any]:
    """One batch: record 0 without an id (PROCESSED), record 1 with a client id and empty data (REJECTED)."""
    client = api(main_stack)
    rejected_id = f"trace-bad-{uuid.uuid4().hex[:8]}"
    records = [
        {"type": "reading", "data": {"celsius": 21.5}},
        {"id": rejected_id, "type": "reading", "data": {}},
    ]
    posted = client.post_records(encode({"records": records}))
    assert posted.status == 202, posted.body
    batch_id = posted.body["batchId"]
    wait_until(
        lambda: client.get_batch(batch_id).ok and client.get_batch(batch_id).body["status"] == "COMPLETE",
        30,
        "the batch to be processed",
    )
    return {"batchId": batch_id, "records": records, "rejectedId": rejected_id}


def logs_of_both_functions(trace: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Log lines reach the log groups a little after the work: wait for ingest's and the processor's."""
    return wait_until(
        lambda: (
            (report := trace())
            and {line["function"] for line in report["logs"]} >= {"ingest", "processor"}
            and report
        ),
        20,
        "ingest and processor log lines",
        interval=0.5,
    )


def test_trace_of_a_processed_record(main_stack: LocalStack, processed_batch: dict[str, Any]) -> None:
    sources = sources_for(main_stack.target())
    batch_id = processed_batch["batchId"]
    report = logs_of_both_functions(lambda: trace_record(sources, f"{batch_id}-0"))

    assert report["kind"] == "record" and report["recordId"] == f"{batch_id}-0"
    batch = report["batch"]
    assert batch["batchId"] == batch_id and batch["status"] == "COMPLETE"
    assert (batch["accepted"], batch["processed"], batch["rejected"], batch["pending"]) == (2, 1, 1, 0)
    assert report["raw"]["key"] == batch["rawKey"] and report["raw"]["key"].endswith(f"{batch_id}.json")
    assert report["raw"]["index"] == 0 and report["raw"]["record"] == processed_batch["records"][0]
    outcome = report["outcome"]
    assert outcome["status"] == "PROCESSED" and outcome["type"] == "reading" and "result" in outcome
    assert isinstance(outcome["latencyMs"], int) and 0 <= outcome["latencyMs"] < 30_000
    assert report["dlq"]["checked"] is True and report["dlq"]["inDlq"] is False
    correlation = batch["correlationId"]
    assert correlation and all(line["fields"]["correlation_id"] == correlation for line in report["logs"])
    assert any("batch processed" in line["message"] for line in report["logs"])
    assert report["xray"] == {"traceIds": [], "links": []}  # the local runtime runs without X-Ray


def test_trace_of_a_rejected_record_found_by_its_client_id(
    main_stack: LocalStack, processed_batch: dict[str, Any]
) -> None:
    report = trace_record(sources_for(main_stack.target()), processed_batch["rejectedId"])
    assert report["batch"]["batchId"] == processed_batch["batchId"]
    assert report["raw"]["index"] == 1 and report["raw"]["record"] == processed_batch["records"][1]
    assert report["outcome"]["status"] == "REJECTED" and "data" in report["outcome"]["reason"]
    assert "result" not in report["outcome"] and report["outcome"]["latencyMs"] is not None


def test_trace_of_a_batch(main_stack: LocalStack, processed_batch: dict[str, Any]) -> None:
    report = trace_batch(sources_for(main_stack.target()), processed_batch["batchId"])
    assert report["kind"] == "batch" and report["batch"]["accepted"] == 2
    assert report["raw"]["records"] == 2 and "record" not in report["raw"]
    assert report["dlq"]["inDlq"] is False


@pytest.mark.parametrize(
    ("record_id", "words"),
    [
        ("never-sent-by-any-test", "no batch holds it"),  # fixed: xdist workers must collect the same ids
        (f"{UNKNOWN_BATCH}-0", f"no batch {UNKNOWN_BATCH} either"),
    ],
)
def test_an_unknown_record_id_is_not_found(main_stack: LocalStack, record_id: str, words: str) -> None:
    with pytest.raises(TraceNotFoundError, match=words):
        trace_record(sources_for(main_stack.target()), record_id)


def test_an_index_past_its_batch_says_the_batch_exists(
    main_stack: LocalStack, processed_batch: dict[str, Any]
) -> None:
    batch_id = processed_batch["batchId"]
    with pytest.raises(TraceNotFoundError, match=f"batch {batch_id} exists but accepted 2 record"):
        trace_record(sources_for(main_stack.target()), f"{batch_id}-2")


def test_cli_json_and_exit_codes(main_stack: LocalStack, rtp: Rtp, processed_batch: dict[str, Any]) -> None:
    batch_id = processed_batch["batchId"]
    found = rtp(main_stack, "trace", f"{batch_id}-0", "--json")
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    assert set(report) >= {"kind", "recordId", "batch", "outcome", "raw", "dlq", "logs", "xray"}
    assert report["outcome"]["status"] == "PROCESSED"

    shown = rtp(main_stack, "trace", processed_batch["rejectedId"], "--env", "local")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    for words in (
        "REJECTED",
        f"batch {batch_id} COMPLETE",
        "as sent (index 1)",
        "not in the DLQ",
        "x-ray none",
    ):
        assert words in text, shown.stdout

    batch = rtp(main_stack, "trace", "--batch", batch_id, "--json")
    assert batch.returncode == 0 and json.loads(batch.stdout)["kind"] == "batch"

    for args, code, words in [
        (["trace", f"{UNKNOWN_BATCH}-3"], 1, "no record"),
        (["trace", "--batch", "nope"], 1, "26 or 27 characters"),
        (["trace"], 2, "RECORD_ID or --batch"),
        (["trace", "x", "--batch", batch_id], 2, "RECORD_ID or --batch"),
        (["trace", "x", "--env", "no-such-env"], 2, "no-such-env"),
    ]:
        result = rtp(main_stack, *args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert words in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


def test_trace_of_a_dead_lettered_batch(incident_stack: LocalStack, tmp_path: Path, rtp: Rtp) -> None:
    flag = tmp_path / "downstream-broken"
    flag.write_text("on")
    client = api(incident_stack)
    client_id = f"trace-poison-{uuid.uuid4().hex[:6]}"
    fault = {"failWhileExists": str(flag)}
    records = [{"type": "t", "data": fault}, {"id": client_id, "type": "t", "data": fault}]
    posted = client.post_records(encode({"records": records}))
    assert posted.status == 202
    batch_id = posted.body["batchId"]
    target = incident_stack.target()
    sources = sources_for(target)
    try:
        # maxReceiveCount 2, visibility timeout 3 s: two failed deliveries, then the DLQ.
        report = wait_until(
            lambda: (r := trace_record(sources, f"{batch_id}-0"))["dlq"]["inDlq"] and r,
            40,
            "the claim check in the DLQ",
            interval=0.5,
        )
        assert report["outcome"] == {"status": "NOT_PROCESSED"}
        assert report["raw"]["record"] == records[0]
        assert (
            report["batch"]["status"] == "IN_PROGRESS"
            and "downstream unavailable" in report["batch"]["lastError"]
        )
        assert report["dlq"]["message"]["receiveCount"] >= 2

        # A client id of a dead-lettered batch is in no key yet: found among the ids of the DLQ's batches.
        by_client_id = trace_record(sources, client_id)
        assert by_client_id["batch"]["batchId"] == batch_id and by_client_id["dlq"]["inDlq"]
        assert by_client_id["outcome"] == {"status": "NOT_PROCESSED"}
        assert by_client_id["raw"]["record"] == records[1]

        cli = rtp(incident_stack, "trace", f"{batch_id}-0")
        assert cli.returncode == 0, cli.stderr
        assert "claim check is in the DLQ" in " ".join(cli.stdout.split())
        assert "NOT_PROCESSED" in cli.stdout
    finally:
        flag.unlink()
        delete_dead_letter(target, batch_id)
