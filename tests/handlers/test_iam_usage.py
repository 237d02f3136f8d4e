"""Least privilege, proven by use: every AWS call each handler makes is allowed by that function's role in
the synthesized template, and every grant is accounted for (used by the code, by the event source mapping,
by a service on the function's behalf, or reported as unused).

Every handler test already fails if its calls are not allowed (the `pipeline` fixture checks on teardown).
This module drives one compact scenario per function itself, so its verdict and its usage table do not
depend on which other tests ran, and adds the checks that need the whole picture.
"""

from __future__ import annotations

from typing import Any

import pytest

from rtp_cli.local import iam
from rtp_cli.local.worker import LocalLambdaContext
from tests.handlers.harness import ESM, ApiCall, Pipeline, api_event, fail_calls


def scenario(pipeline: Pipeline) -> list[ApiCall]:
    """Every code path that talks to AWS: accept (with and without an idempotency key, a replay, a retry
    that finishes an interrupted request), process (new records, a duplicate id, a transient failure and
    its redelivery, which skips what is stored, a leased chunk of ids the API assigned), query (records,
    batches, misses, the REJECTED listing)."""
    from rtp_pipeline.aws import client

    start = len(pipeline.recorder.calls)
    keyed = {"Content-Type": "application/json", "Idempotency-Key": "iam-1"}
    first = pipeline.post_records({"records": [{"id": "r-1", "type": "t", "data": {"n": 1}}]}, headers=keyed)
    pipeline.post_records({"records": [{"id": "r-1", "type": "t", "data": {"n": 1}}]}, headers=keyed)
    failed = fail_calls(client("sqs"), "SendMessage", lambda _: not failed, "ServiceUnavailable")
    interrupted = {"Content-Type": "application/json", "Idempotency-Key": "iam-2"}
    pipeline.post_records({"type": "t", "data": {"n": 2}}, headers=interrupted)
    pipeline.post_records({"type": "t", "data": {"n": 2}}, headers=interrupted)
    second = pipeline.post_records(
        {"records": [{"id": "r-1", "type": "t", "data": {"n": 3}}, {"type": "t", "data": {}}]}
    )
    flaky = fail_calls(client("s3"), "GetObject", lambda _: not flaky, "SlowDown")
    pipeline.drain()  # the redelivery reads which of its records are stored (BatchGetItem)
    # A first delivery that meets an id another batch stored: the refused put returns the stored item.
    pipeline.post_records({"records": [{"id": "r-1", "type": "t", "data": {"n": 4}}]})
    # Records without client ids, enough for one chunk lease: BatchWriteItem under the lease. The first
    # delivery finds no time left and hands the message straight back (ChangeMessageVisibility).
    leased = pipeline.post_records({"records": [{"type": "t", "data": {"n": n}} for n in range(8)]})
    readings, usual = iter([10_000]), LocalLambdaContext.get_remaining_time_in_millis
    LocalLambdaContext.get_remaining_time_in_millis = lambda self: next(readings, 1_000)  # type: ignore[method-assign]
    try:
        pipeline.deliver()
    finally:
        LocalLambdaContext.get_remaining_time_in_millis = usual  # type: ignore[method-assign]
    pipeline.drain()
    # A replay (`rtp replay`), through the replay queue's own mapping: its first delivery finds no time
    # left and hands the message back to the replay queue; the next replaces the records' outcomes.
    pipeline.send_replay(leased.body["batchId"], "iam-replay")
    readings = iter([10_000])
    LocalLambdaContext.get_remaining_time_in_millis = lambda self: next(readings, 1_000)  # type: ignore[method-assign]
    try:
        pipeline.deliver(replay=True)
    finally:
        LocalLambdaContext.get_remaining_time_in_millis = usual  # type: ignore[method-assign]
    assert [delivery.failures for delivery in pipeline.drain(replay=True)] == [[]]
    for batch_id in (first.body["batchId"], second.body["batchId"], "missing"):
        pipeline.get_batch(batch_id)
    pipeline.get_record("r-1")
    pipeline.get_record("missing")
    # The REJECTED listing: a Query per shard of each hour of the window, on the sparse index only.
    listing = api_event("GET", "/records", resource="/records")
    listing["queryStringParameters"] = {"status": "REJECTED", "since": "1h"}
    assert pipeline.api("query", listing).body["records"]
    assert len(failed) == len(flaky) == 1
    return pipeline.recorder.since(start)


@pytest.fixture(scope="module")
def _scenario_run() -> dict[str, Any]:
    return {}


@pytest.fixture
def recorded(pipeline: Pipeline, _scenario_run: dict[str, Any]) -> list[ApiCall]:
    """The scenario's calls, recorded once per module in the first test's account: every test's account
    is a copy of the same provisioned one (tests/handlers/conftest.py), so the calls name its resources."""
    if not _scenario_run:
        _scenario_run.update(calls=scenario(pipeline), refs=dict(pipeline.resolve.refs))
    assert _scenario_run["refs"] == pipeline.resolve.refs
    calls: list[ApiCall] = _scenario_run["calls"]
    return calls


def test_every_call_is_allowed_by_the_calling_functions_role(
    pipeline: Pipeline, recorded: list[ApiCall]
) -> None:
    functions = pipeline.functions
    assert set(functions) == {"ingest", "processor", "query"}
    for name in functions:  # the recorder saw each function work, or this test proves nothing
        assert any(call.actor == name for call in recorded), f"no calls recorded for {name}"
    assert any(ESM in call.actor for call in recorded)
    assert iam.violations(recorded, pipeline.resolve, functions) == []


def test_the_checker_refuses_what_the_roles_do_not_grant(pipeline: Pipeline, recorded: list[ApiCall]) -> None:
    """The check can fail: calls the roles must not allow are refused."""
    functions = pipeline.functions
    put = next(c for c in recorded if c.actor == "ingest" and c.operation == "PutObject")
    get_item = next(c for c in recorded if c.actor == "query" and c.operation == "GetItem")
    table = get_item.params["TableName"]
    index_read = f'SELECT * FROM "{table}"."rejected"'  # noqa: S608 (a test's own text)
    forbidden = [
        ApiCall("ingest", "s3", "GetObject", dict(put.params)),  # ingest may write raw/, never read
        ApiCall("ingest", "s3", "PutObject", {**put.params, "Key": "elsewhere/x.json"}),  # only raw/*
        ApiCall("query", "dynamodb", "PutItem", dict(get_item.params)),  # the query function only reads
        ApiCall("query", "dynamodb", "Query", dict(get_item.params)),  # the table itself: not granted
        ApiCall("query", "dynamodb", "Query", {**get_item.params, "IndexName": "another-index"}),
        ApiCall("query", "dynamodb", "Scan", {**get_item.params, "IndexName": "rejected"}),
        ApiCall("processor", "sqs", "SendMessage", {"QueueUrl": pipeline.queue_url}),
        ApiCall("processor", "sqs", "ReceiveMessage", {"QueueUrl": pipeline.dlq_url}),  # not the DLQ
        ApiCall("ingest", "dynamodb", "GetItem", {"TableName": "another-table"}),
        # PartiQL: each statement needs its verb on its table; the processor only INSERTs
        ApiCall("query", "dynamodb", "BatchExecuteStatement", _partiql(f'INSERT INTO "{table}" VALUE {{}}')),
        ApiCall("processor", "dynamodb", "BatchExecuteStatement", _partiql(f'UPDATE "{table}" SET a=1')),  # noqa: S608 (no input)
        ApiCall("processor", "dynamodb", "BatchExecuteStatement", _partiql('INSERT INTO "other" VALUE {}')),
        ApiCall("query", "dynamodb", "BatchExecuteStatement", _partiql(index_read)),  # Query only
    ]
    for call in forbidden:
        primary = iam.needs_of(call, pipeline.resolve)[0]
        refused = [need for need, _ in iam.violations([call], pipeline.resolve, functions)]
        assert primary in refused, f"{call.actor} would be allowed {primary.action} on {primary.resource}"


def test_the_served_runtime_checks_what_its_workers_report(
    pipeline: Pipeline, recorded: list[ApiCall]
) -> None:
    """`rtp deploy --env local` checks each invocation's calls (as its worker summarizes them, without
    payloads) against the function's role: the summary keeps what the check needs, so every call the
    handlers make passes, and one the role lacks is reported."""
    from rtp_cli.local.iam import RoleCheck
    from rtp_cli.local.worker import call_summary

    check = RoleCheck(pipeline.resolve)
    handler_calls = [call for call in recorded if ESM not in call.actor]
    assert {call.actor for call in handler_calls} == {"ingest", "processor", "query"}
    for call in handler_calls:
        summary = call_summary(call.service, call.operation, call.params)
        assert check.refused(pipeline.functions[call.actor], [summary]) == [], call
    put = next(c for c in recorded if c.actor == "ingest" and c.operation == "PutObject")
    [refused] = check.refused(pipeline.functions["processor"], [call_summary("s3", "PutObject", put.params)])
    assert refused.startswith(f"s3:PutObject on arn:aws:s3:::{put.params['Bucket']}/{put.params['Key']}")
    # The query function only reads single items: the processor's other table calls are not its to make.
    other = [
        c for c in recorded if c.actor == "processor" and c.service == "dynamodb" and c.operation != "GetItem"
    ]
    assert other
    for call in other:
        summary = call_summary("dynamodb", call.operation, call.params)
        assert check.refused(pipeline.functions["query"], [summary]), call.operation


def test_the_event_source_mapping_can_run_with_the_processor_role(pipeline: Pipeline) -> None:
    """Lambda polls the queue with the processor's role: it needs the documented SQS actions on exactly
    the queue the mapping (in the template) reads, and KMS decrypt for the queue's key."""
    statements = iam.role_statements(pipeline.resolve, pipeline.functions["processor"])
    queue_arn = str(pipeline.resolve(pipeline.esm["EventSourceArn"]))
    function_ref = pipeline.esm["FunctionName"]["Ref"]
    assert function_ref == pipeline.functions["processor"].logical_id
    for action in iam.ESM_ACTIONS:
        assert iam.is_allowed(statements, action, queue_arn), action
    key = str(
        pipeline.resolve(
            pipeline.resolve.resources[pipeline.queue_logical_id]["Properties"]["KmsMasterKeyId"]
        )
    )
    assert iam.is_allowed(statements, "kms:Decrypt", key)


def test_roles_have_no_managed_policies_and_no_wildcard_actions(pipeline: Pipeline) -> None:
    for info in pipeline.functions.values():
        role = pipeline.resolve.resources[info.role_logical_id]["Properties"]
        assert not role.get("ManagedPolicyArns"), info.name
        for statement in iam.role_statements(pipeline.resolve, info):
            assert all("*" not in action for action in statement.actions), (info.name, statement.actions)


def test_usage_table(pipeline: Pipeline, recorded: list[ApiCall], capsys: pytest.CaptureFixture[str]) -> None:
    """Print every grant with what used it; fail on a grant to a data resource the code never uses."""
    needs = [need for call in recorded for need in iam.needs_of(call, pipeline.resolve)]
    rows = iam.usage(needs, pipeline.resolve, pipeline.functions)
    with capsys.disabled():
        print("\n\nIAM usage (function role grants vs. calls recorded in tests/handlers/test_iam_usage.py)")
        print(iam.table(rows))
        print(NOTES)
    unused: list[Any] = [
        row for row in rows if row.used_by.startswith("UNUSED") and row.action not in ALLOWED_UNUSED
    ]
    assert unused == [], "grants no code path uses (remove them from stack/functions.py):\n" + iam.table(
        unused
    )


# Granted, not exercised here, and why that is right.
ALLOWED_UNUSED: set[str] = set()

NOTES = """
notes: KMS actions are performed by S3 (SSE-KMS objects), SQS (SSE-KMS queues) and DynamoDB (table key)
with the function's credentials; the rows marked 'S3/SQS SSE-KMS' are implied by recorded calls.
kms:Encrypt and the DynamoDB table key uses are not observable offline (DynamoDB uses the key under the
grant it created for the table); they are kept so the functions can read and write the encrypted table.
"""


def _partiql(statement: str) -> dict[str, Any]:
    return {"Statements": [{"Statement": statement, "Parameters": []}]}
