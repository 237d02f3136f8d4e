"""`rtp reconcile` against real local environments: records sent with `rtp send` and processed, then the
real CLI (a subprocess) green, red with the ids after a record item is deleted behind the pipeline's back,
`--counts-only`, `--json`, a refused request shown as not accepted, a dead-lettered batch from the
fault-switch transform of `incident_stack`, and the usage errors.

Each test reconciles a window that holds only its own requests (from just before its first request to just
after its last), so the other tests' traffic on the shared environments never enters it.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rtp_cli.local.testing import LocalInstance as LocalStack
from rtp_cli.local.testing import api_client as api
from rtp_cli.local.testing import delete_dead_letter, wait_until
from rtp_cli.operate.api_client import encode
from rtp_cli.reconcile import Window, reconcile, sources_for

pytestmark = pytest.mark.e2e
Rtp = Callable[..., subprocess.CompletedProcess[str]]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def moment_before() -> datetime:
    moment = datetime.now(UTC) - timedelta(milliseconds=2)
    time.sleep(0.01)
    return moment


def moment_after() -> datetime:
    time.sleep(0.01)
    return datetime.now(UTC)


def reconcile_cli(rtp: Rtp, stack: LocalStack, since: datetime, until: datetime, *args: str) -> Any:
    return rtp(stack, "reconcile", "--env", "local", "--since", iso(since), "--until", iso(until), *args)


def test_green_after_a_clean_run_then_red_with_the_ids(
    main_stack: LocalStack, rtp: Rtp, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    lines = [
        *({"type": "reading", "data": {"n": n}} for n in range(250)),
        *({"id": f"recon-{tag}-{n}", "type": "reading", "data": {"n": n}} for n in range(5)),
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    since = moment_before()
    sent = rtp(main_stack, "send", "--file", str(path), "--batch-size", "100", "--wait", "--timeout", "60")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    # Duplicate ids: a refusal the request model cannot express, so the function's (after the raw write).
    twice = {"id": f"twice-{tag}", "type": "reading", "data": {"n": 1}}
    refused = api(main_stack).post_records(encode({"records": [twice, twice]}))
    assert refused.status == 400, refused.body  # kept raw, never accepted
    until = moment_after()

    green = reconcile_cli(rtp, main_stack, since, until, "--json")
    assert green.returncode == 0, green.stdout + green.stderr
    report = json.loads(green.stdout)
    assert set(report) >= {"ok", "window", "counts", "queues", "gaps", "missing", "gapBatches", "cost"}
    counts = report["counts"]
    assert counts["rawObjects"] == 4 and counts["notAccepted"] == 1  # 3 requests of up to 100 + the 400
    assert counts["requestsAccepted"] == 3 and counts["recordsAccepted"] == 255
    assert counts["stored"] == {"processed": 255, "rejected": 0, "duplicates": 0, "total": 255}
    assert counts["verified"] == {"processed": 255, "rejected": 0, "duplicates": 0, "missing": 0}
    assert report["ok"] is True and report["gaps"] == {"batches": 0, "records": 0}
    # 3 batch items in one call, the one IDS item (the batch with client ids), 255 record items in 3 calls
    assert report["cost"]["calls"]["dynamodb.BatchGetItem"] == 1 + 1 + 3

    # Behind the pipeline's back: one API-assigned record and one client-named record disappear.
    target = main_stack.target()
    table, db = target.output("TableName"), target.client("dynamodb")
    named = f"recon-{tag}-3"
    owner = db.get_item(TableName=table, Key={"pk": {"S": f"REC#{named}"}})["Item"]["b"]["S"]
    assigned = f"{owner}-0"  # the 5 named records were sent last: their batch also holds API-assigned ids
    for record_id in (named, assigned):
        db.delete_item(TableName=table, Key={"pk": {"S": f"REC#{record_id}"}})

    red = reconcile_cli(rtp, main_stack, since, until, "--json")
    assert red.returncode == 1, red.stdout + red.stderr
    report = json.loads(red.stdout)
    assert report["ok"] is False and report["gaps"] == {"batches": 1, "records": 2}
    assert {(m["recordId"], m["batchId"]) for m in report["missing"]} == {(named, owner), (assigned, owner)}

    shown = reconcile_cli(rtp, main_stack, since, until, "--max-ids", "1")
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    text = " ".join(shown.stdout.split())
    assert "gaps: 2 record(s) in 1 batch(es) not accounted for" in text
    assert "and 1 more record id(s) (raise --max-ids)" in text
    assert (named in text) != (assigned in text) and f"batch {owner}" in text
    assert "refused or failed requests (not accepted) 1" in text

    # --counts-only reads the counters, which still say every record was stored: green, and cheap.
    blind = reconcile_cli(rtp, main_stack, since, until, "--counts-only", "--json")
    assert blind.returncode == 0, blind.stdout + blind.stderr
    assert json.loads(blind.stdout)["cost"]["calls"]["dynamodb.BatchGetItem"] == 1


def test_a_dead_lettered_batch_is_a_gap(incident_stack: LocalStack, rtp: Rtp, tmp_path: Path) -> None:
    flag = tmp_path / "downstream-broken"
    flag.write_text("on")
    client = api(incident_stack)
    since = moment_before()
    fine = client.post_records(encode({"records": [{"type": "t", "data": {"ok": 1}}]}))
    # Record 0 fails while the flag exists; record 1 (empty data) is REJECTED and stored meanwhile.
    poisoned = client.post_records(
        encode(
            {"records": [{"type": "t", "data": {"failWhileExists": str(flag)}}, {"type": "t", "data": {}}]}
        )
    )
    assert fine.status == 202 and poisoned.status == 202
    until = moment_after()
    batch_id = poisoned.body["batchId"]
    target = incident_stack.target()
    sources = sources_for(target)
    try:
        # maxReceiveCount 2, visibility timeout 3 s: two failed deliveries, then the DLQ.
        report = wait_until(
            lambda: (
                (r := reconcile(sources, Window(since, until)))["counts"]["deadLettered"]["batches"] and r
            ),
            40,
            "the claim check in the DLQ",
            interval=0.5,
        )
        assert report["ok"] is False
        assert report["counts"]["deadLettered"] == {"batches": 1, "records": 1}
        assert report["counts"]["verified"] == {"processed": 1, "rejected": 1, "duplicates": 0, "missing": 1}
        assert report["counts"]["complete"] == {"batches": 1}
        [gap] = report["gapBatches"]
        assert gap["batchId"] == batch_id and gap["state"] == "dead-lettered"
        assert "downstream unavailable" in gap["lastError"]
        assert [m["recordId"] for m in report["missing"]] == [f"{batch_id}-0"]

        cli = reconcile_cli(rtp, incident_stack, since, until)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        text = " ".join(cli.stdout.split())
        assert f"batch {batch_id} dead-lettered" in text and "not stored: batch dead-lettered" in text
        assert reconcile(sources, Window(since, until))["queues"]["deadLetter"]["visible"] >= 1  # peeked only
    finally:
        flag.unlink()
        delete_dead_letter(target, batch_id)


def test_usage_errors_exit_2_without_a_traceback(main_stack: LocalStack, rtp: Rtp) -> None:
    for args, words in [
        (["reconcile", "--since", "yesterday"], "neither an RFC 3339 time"),
        (["reconcile", "--since", "1h", "--until", "2h"], "must be before"),
        (["reconcile", "--since", "1h", "--env", "no-such-env"], "no-such-env"),
        (["reconcile"], "--since"),
    ]:
        result = rtp(main_stack, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert words in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
