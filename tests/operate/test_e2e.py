"""The day-2 commands end to end: the real `rtp` CLI (subprocesses) against local environments served by
the real local runtime over HTTP on 127.0.0.1 (SigV4, throttling, the processor fed by the queue)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rtp_cli.local.testing import ROOT, rtp_argv, scan, wait_until
from rtp_cli.local.testing import LocalInstance as LocalStack
from rtp_cli.local.testing import api_client as api
from rtp_cli.operate.api_client import encode

pytestmark = pytest.mark.e2e
Rtp = Callable[..., subprocess.CompletedProcess[str]]


def queue_depth(stack: LocalStack, output: str) -> int:
    target = stack.target()
    attrs = target.client("sqs").get_queue_attributes(
        QueueUrl=target.output(output),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def jsonl(path: Path, count: int, make: Callable[[int], dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(make(n)) + "\n" for n in range(count)))
    return path


# --- smoke test ------------------------------------------------------------------------------------------


def test_smoke_test_passes(main_stack: LocalStack, rtp: Rtp) -> None:
    result = rtp(main_stack, "send", "--env", "local", "--timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smoke test passed: 5 records" in result.stdout
    assert result.stdout.count("PROCESSED") >= 6 and result.stdout.count("REJECTED") >= 4  # expected + got


def test_smoke_test_times_out_when_the_processor_is_stopped(stopped_stack: LocalStack, rtp: Rtp) -> None:
    result = rtp(stopped_stack, "send", "--env", "local", "--timeout", "2")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "smoke test timed out after 2s: 5 record(s) were accepted but never processed" in message
    assert "Is the processor running?" in message


def client_ids(stack: LocalStack, prefix: str) -> list[list[str]]:
    """Per batch whose records a client named with ids starting `prefix`: those ids, in request order (the
    IDS#<batchId> item, storage.py)."""
    items = scan(stack.target(), "IDS#")
    return [item["ids"]["S"].split("\n") for item in items if item["ids"]["S"].startswith(prefix)]


# --- bulk loads ------------------------------------------------------------------------------------------


def test_ten_thousand_records_arrive_completely(main_stack: LocalStack, rtp: Rtp, tmp_path: Path) -> None:
    """10,000 JSON Lines records through the whole local pipeline: every record accepted in exactly one
    batch, and every one PROCESSED by the processor fed from the queue, stored once. The first 1,000 carry
    client ids (a conditional put each, slow through the local emulator); the API assigns the others'."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    path = jsonl(
        tmp_path / "bulk.jsonl",
        10_000,
        lambda n: {**({"id": f"bulk-{n}"} if n < 1000 else {}), "type": "reading", "data": {"n": n}},
    )
    result = rtp(main_stack, "send", "--file", str(path), "--concurrency", "4", "--wait", "--timeout", "240")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "accepted 10000 record(s) in 20 batch(es)" in out
    assert "processed 10000, rejected by the transform 0, duplicates 0; 20 of 20 batch(es) complete" in out
    named = client_ids(main_stack, "bulk-")
    assert len(named) == 2 and sorted(i for batch in named for i in batch) == sorted(
        f"bulk-{n}" for n in range(1000)
    )
    batches = {
        b["batchId"]["S"]  # not the key: a batch `rtp send` keyed is stored under its key's part
        for b in scan(main_stack.target(), "BATCH#")
        if b["receivedAt"]["S"] >= started and b["accepted"]["N"] == "500"
    }
    records = [item for item in scan(main_stack.target(), "REC#") if item["b"]["S"] in batches]
    assert len(batches) == 20 and len(records) == 10_000
    assert {item["s"]["S"] for item in records} == {"P"}  # storage.py: `s` is the status, P PROCESSED


def test_forced_throttling_is_retried_without_loss_or_duplicates(
    stopped_stack: LocalStack, rtp: Rtp, tmp_path: Path
) -> None:
    """Stage throttle 10 rps / burst 3 and 8 requests in flight: many 429s, each retried with its key."""
    path = jsonl(
        tmp_path / "t.jsonl", 1000, lambda n: {"id": f"thr-{n}", "type": "reading", "data": {"n": n}}
    )
    queued_before = queue_depth(stopped_stack, "WorkQueueUrl")
    result = rtp(stopped_stack, "send", "--file", str(path), "--batch-size", "25", "--concurrency", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted 1000 record(s) in 40 batch(es)" in result.stdout
    retries = int(result.stdout.split(" retr")[0].split()[-1])
    assert retries > 0, result.stdout  # the throttle did bite
    batches = client_ids(stopped_stack, "thr-")
    ids = [record_id for batch in batches for record_id in batch]
    assert len(batches) == 40 and sorted(ids) == sorted(f"thr-{n}" for n in range(1000))
    # The processor is stopped here, so the queue shows exactly one claim check per accepted batch.
    assert queue_depth(stopped_stack, "WorkQueueUrl") - queued_before == 40


def test_a_killed_run_resumes_without_duplicates(stopped_stack: LocalStack, rtp: Rtp, tmp_path: Path) -> None:
    """Records without ids: a batch accepted twice would be a second batch of new ids (<batchId>-<n>)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    queued_before = queue_depth(stopped_stack, "WorkQueueUrl")
    path = jsonl(
        tmp_path / "kill.jsonl", 10_000, lambda n: {"type": "resume", "data": {"run": "kill", "n": n}}
    )
    argv = [*rtp_argv(), "send", "--file", str(path), "--batch-size", "100", "--concurrency", "2"]
    journals = stopped_stack.state_dir / "send-journals"
    earlier = set(journals.glob("*.jsonl"))  # other tests' journals in this state directory
    process = subprocess.Popen(
        argv, cwd=ROOT, env=stopped_stack.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )

    def accepted_batches() -> int:
        total = 0
        for journal in set(journals.glob("*.jsonl")) - earlier:
            total += sum('"kind":"accepted"' in line for line in journal.read_text().splitlines())
        return total

    try:
        wait_until(lambda: accepted_batches() >= 30, 60, "30 accepted batches", interval=0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)
    killed_at = accepted_batches()
    assert 30 <= killed_at < 100, killed_at  # killed halfway, not after the end

    refused = rtp(stopped_stack, "send", "--file", str(path), "--batch-size", "100")
    assert refused.returncode == 2 and "--resume" in refused.stderr
    # This stack's stage allows 10 requests/s (burst 3), for the throttling test: the resumed run gets the
    # attempts to ride it out, since what is tested here is the resume, not the retry budget.
    resumed = rtp(
        stopped_stack, "send", "--file", str(path), "--batch-size", "100", "--resume", "--max-attempts", "30"
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "accepted 10000 record(s) in 100 batch(es)" in " ".join(resumed.stdout.split())
    assert f"({killed_at * 100} by the earlier run, resumed)" in " ".join(resumed.stdout.split())
    batches = [
        b
        for b in scan(stopped_stack.target(), "BATCH#")
        if b["receivedAt"]["S"] >= started and "clientIds" not in b  # records without ids, as sent here
    ]
    # Exactly 100 batches of 100: nothing accepted twice, nothing missing. One claim check each, plus one
    # more for each request the kill caught in flight (at most --concurrency 2) that the API had accepted:
    # its retry under the same key finds the batch not settled (the processor is stopped) and enqueues its
    # claim check again, which the processor stores and counts once.
    assert len(batches) == 100 and sum(int(b["accepted"]["N"]) for b in batches) == 10_000
    assert 100 <= queue_depth(stopped_stack, "WorkQueueUrl") - queued_before <= 102


def test_bad_lines_are_reported_with_line_numbers(main_stack: LocalStack, rtp: Rtp, tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"bad-{n}", "type": "t", "data": {"n": n}}) for n in range(10)]
    lines[2] = "{this is not json"
    lines[6] = json.dumps({"id": "bad-6", "data": {"n": 6}})  # no type
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    result = rtp(main_stack, "send", "--file", str(tmp_path / "bad.jsonl"))
    assert result.returncode == 1
    out = " ".join(result.stdout.split())
    assert "accepted 8 record(s)" in out and "rejected 2 line(s): 3, 7" in out
    assert "line 3: not valid JSON" in out and "line 7: type is required" in out


def test_csv_input(main_stack: LocalStack, rtp: Rtp, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("sensor,celsius\ncsv-a,21.5\ncsv-b,19.0\ncsv-c,22.1\n")
    result = rtp(
        main_stack,
        "send",
        "--file",
        str(tmp_path / "in.csv"),
        "--format",
        "csv",
        "--type",
        "temperature",
        "--id-column",
        "sensor",
        "--wait",
        "--timeout",
        "30",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "accepted 3 record(s)" in result.stdout and "processed 3," in result.stdout
    shown = rtp(main_stack, "show", "csv-b", "--env", "local")
    assert shown.returncode == 0, shown.stderr
    assert "PROCESSED" in shown.stdout and '"celsius": "19.0"' in shown.stdout


# --- logs ----------------------------------------------------------------------------------------------


def test_logs_follow_one_request_across_ingest_and_processor(incident_stack: LocalStack, rtp: Rtp) -> None:
    client = api(incident_stack)
    posted = client.post_records(encode({"id": "logs-1", "type": "t", "data": {"x": 1}}))
    assert posted.status == 202
    batch_id = posted.body["batchId"]
    wait_until(lambda: client.get_record("logs-1").ok, 30, "the record to be processed")
    correlation = client.get_batch(batch_id).body["correlationId"]
    assert correlation

    def both() -> subprocess.CompletedProcess[str] | None:
        result = rtp(incident_stack, "logs", "--correlation-id", correlation, "--since", "5m")
        lines = result.stdout.splitlines()
        ingest = [line for line in lines if " ingest " in line and "batch accepted" in line]
        processor = [line for line in lines if " processor " in line and "batch processed" in line]
        return result if ingest and processor else None

    result = wait_until(both, 20, "ingest and processor log lines", interval=0.5)
    assert isinstance(result, subprocess.CompletedProcess)
    assert all(correlation in line for line in result.stdout.splitlines() if line.strip())
    raw = rtp(incident_stack, "logs", "--correlation-id", correlation, "--since", "5m", "--json")
    parsed = [json.loads(line) for line in raw.stdout.splitlines()]
    assert {p["service"] for p in parsed} >= {"ingest", "processor"}
    assert {p["correlation_id"] for p in parsed} == {correlation}


# --- a DLQ incident ---------------------------------------------------------------------------------------


def test_poison_message_peek_fix_redrive(incident_stack: LocalStack, rtp: Rtp, tmp_path: Path) -> None:
    flag = tmp_path / "downstream-broken"
    flag.write_text("on")
    client = api(incident_stack)
    posted = client.post_records(
        encode({"id": "poison-1", "type": "t", "data": {"failWhileExists": str(flag)}})
    )
    assert posted.status == 202
    batch_id = posted.body["batchId"]
    # maxReceiveCount 2, visibility timeout 3 s: two failed deliveries, then the DLQ.
    wait_until(
        lambda: queue_depth(incident_stack, "DeadLetterQueueUrl") == 1,
        40,
        "the message in the DLQ",
        interval=0.5,
    )

    listed = rtp(incident_stack, "dlq", "list")
    assert listed.returncode == 0 and "dead-letter queue" in listed.stdout
    peek = rtp(incident_stack, "dlq", "peek", "--json")
    assert peek.returncode == 0, peek.stderr
    [message] = [json.loads(line) for line in peek.stdout.splitlines()]
    assert message["batchId"] == batch_id and message["key"].endswith(f"{batch_id}.json")
    assert "downstream unavailable" in message["lastError"] and message["receiveCount"] >= 2
    assert queue_depth(incident_stack, "DeadLetterQueueUrl") == 1  # peek consumed nothing
    assert not client.get_record("poison-1").ok

    flag.unlink()  # the fix
    dry = rtp(incident_stack, "dlq", "redrive", "--dry-run")
    assert "would move 1 message(s)" in dry.stdout and queue_depth(incident_stack, "DeadLetterQueueUrl") == 1
    moved = rtp(incident_stack, "dlq", "redrive", "--yes")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "moved 1 message(s) to the work queue (receive/send/delete" in moved.stdout
    record = wait_until(
        lambda: client.get_record("poison-1").ok and client.get_record("poison-1"), 30, "processing"
    )
    assert record.body["status"] == "PROCESSED"
    assert queue_depth(incident_stack, "DeadLetterQueueUrl") == 0
    assert "empty" in rtp(incident_stack, "dlq", "peek").stdout
