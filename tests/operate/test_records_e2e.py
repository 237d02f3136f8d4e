"""`rtp records` end to end: the real CLI (a subprocess) against the local runtime serving the synthesized
template over HTTP (SigV4, API Gateway's parameter validation, the query function, moto's DynamoDB with
the REJECTED index)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rtp_cli.local.testing import LocalInstance as LocalStack
from rtp_cli.operate.api_client import ApiClient

pytestmark = pytest.mark.e2e
Rtp = Callable[..., subprocess.CompletedProcess[str]]


def test_rtp_records_lists_the_rejected_records_of_a_window(
    main_stack: LocalStack, rtp: Rtp, tmp_path: Path
) -> None:
    prefix = f"rej{uuid.uuid4().hex[:6]}"
    records = [{"id": f"{prefix}-bad-{n}", "type": "t", "data": {}} for n in range(3)]  # data is empty
    records += [{"id": f"{prefix}-ok-{n}", "type": "t", "data": {"n": n}} for n in range(3)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    sent = rtp(main_stack, "send", "--file", str(tmp_path / "in.jsonl"), "--wait", "--timeout", "30")
    assert "accepted 6 record(s)" in sent.stdout, sent.stdout + sent.stderr

    # One fixed window for the three listings (a relative `--since 10m` moves between calls on a slow run).
    until = datetime.now(UTC) + timedelta(seconds=1)
    window = ["--since", _rfc3339(until - timedelta(minutes=10)), "--until", _rfc3339(until)]
    listed = rtp(main_stack, "records", "--status", "REJECTED", *window, "--limit", "1000", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = [row for row in rows if row["recordId"].startswith(prefix)]
    assert sorted(row["recordId"] for row in mine) == [f"{prefix}-bad-{n}" for n in range(3)]
    assert all(row["status"] == "REJECTED" and "data" in row["reason"] and row["type"] == "t" for row in mine)
    order = [(row["processedAt"], row["recordId"]) for row in rows]
    assert order == sorted(order, reverse=True)  # newest first, across every shard

    table = rtp(main_stack, "records", "--env", "local", "--status", "REJECTED", *window)
    assert table.returncode == 0, table.stderr
    assert "record id" in table.stdout and "record(s)" in table.stdout

    oldest_first = ["--limit", "1000", "--oldest-first", "--json"]
    oldest = rtp(main_stack, "records", "--status", "REJECTED", *window, *oldest_first)
    assert [json.loads(line)["recordId"] for line in oldest.stdout.splitlines()][:1] == [rows[-1]["recordId"]]


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_api_gateway_requires_status_and_since(main_stack: LocalStack) -> None:
    """The method's request validator (from the template) answers before the function runs."""
    target = main_stack.target()
    client = ApiClient(target.api_url, target.region, target.credentials)
    missing = client.request("GET", "/records?status=REJECTED")
    assert missing.status == 400 and "since" in missing.error_message()
    answered = client.request("GET", "/records?status=REJECTED&since=1h&limit=1")
    assert answered.status == 200 and set(answered.body) >= {"records", "next", "since", "until"}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--status", "PROCESSED", "--since", "1h"], "not indexed, by design"),
        (["--status", "REJECTED", "--since", "yesterday"], "RFC 3339"),
        (["--status", "REJECTED", "--since", "1h", "--until", "2h"], "not be after until"),
        (["--status", "REJECTED", "--since", "1h", "--limit", "0"], "--limit"),
    ],
)
def test_rtp_records_refuses_bad_input_with_exit_2(
    main_stack: LocalStack, rtp: Rtp, args: list[str], words: str
) -> None:
    result = rtp(main_stack, "records", "--env", "local", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
