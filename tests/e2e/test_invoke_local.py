"""`rtp invoke` against `rtp deploy --env local --detach`: every function with a generated event, through
the running environment's own workers, with its response, log lines and duration."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from rtp_cli.local.testing import LocalInstance
from rtp_cli.local.testing import run_rtp as rtp

pytestmark = pytest.mark.e2e


def _invoke(instance: LocalInstance, *args: str) -> tuple[dict[str, Any], str]:
    completed = rtp(["invoke", *args, "--env", "local", "--json"], instance.state_dir, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout)
    request_id = result["requestId"]
    assert result["logs"][0].startswith(("START", "INIT_REPORT")), result["logs"]
    assert f"START RequestId: {request_id} Version: $LATEST" in result["logs"]
    assert result["logs"][-1].startswith(f"REPORT RequestId: {request_id}")
    assert result["durationMs"] > 0 and result["roundTripMs"] >= result["durationMs"] * 0.5
    return result, completed.stderr


def test_invoke_ingest_with_a_generated_api_event(local_env: LocalInstance) -> None:
    result, _ = _invoke(local_env, "ingest", "--generate", "api")
    response = result["response"]
    assert response["statusCode"] == 202, response
    accepted = json.loads(response["body"])
    assert accepted["accepted"] == 1
    assert any('"batch accepted"' in line for line in result["logs"])
    # the same runtime the API uses: the record goes on to the processor like any other
    assert local_env.wait_processed(accepted["ids"][0])["status"] == "PROCESSED"


def test_invoke_processor_with_a_claim_check_to_a_real_raw_object(local_env: LocalInstance) -> None:
    result, notes = _invoke(local_env, "processor", "--generate", "sqs")
    assert result["response"] == {"batchItemFailures": []}
    found = re.search(r"claim check for batch (\S+) \((raw/\S+)\)", notes)
    assert found, notes
    batch_id, raw_key = found.groups()
    assert raw_key.endswith(f"{batch_id}.json")
    local_env.aws("s3").head_object(Bucket=local_env.output("RawBucketName"), Key=raw_key)  # it is real
    assert any('"batch processed"' in line for line in result["logs"])


def test_invoke_query_with_a_generated_get_event(local_env: LocalInstance) -> None:
    record_id = f"invoke-q-{Path(local_env.state_dir).name}"
    local_env.post_records([{"id": record_id, "type": "view", "data": {"k": 1}}])
    local_env.wait_processed(record_id)
    result, notes = _invoke(local_env, "query", "--generate", "api")
    assert result["response"]["statusCode"] == 200, result["response"]
    assert json.loads(result["response"]["body"])["status"] == "PROCESSED"
    assert "GET /records/{id} proxy event" in notes


def test_print_then_edit_then_invoke_the_event(local_env: LocalInstance, tmp_path: Path) -> None:
    printed = rtp(["invoke", "ingest", "--generate", "api", "--print", "--env", "local"], local_env.state_dir)
    event = json.loads(printed.stdout)
    body = json.loads(event["body"])
    body["records"][0]["id"] = record_id = f"edited-{tmp_path.name}"
    event["body"] = json.dumps(body)
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    result, _ = _invoke(local_env, "ingest", "--event", str(tmp_path / "event.json"))
    assert json.loads(result["response"]["body"])["ids"] == [record_id]


def test_a_function_error_exits_1_with_the_error_and_its_log(local_env: LocalInstance) -> None:
    bad = Path(local_env.state_dir) / "not-sqs.json"
    bad.write_text('{"hello": "world"}', encoding="utf-8")
    completed = rtp(
        ["invoke", "processor", "--env", "local", "--event", str(bad)], local_env.state_dir, check=False
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" in completed.stdout and "REPORT RequestId" in completed.stdout  # the function's log
