"""Replay (`rtp replay`'s processing side): a claim check with a `replay` member, on the replay queue, runs
the records its batch stored through the current transform again and replaces their outcomes, with the
batch counters moved by exactly the change, once per replay, whatever is redelivered, resent or crashes."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.handlers.harness import Pipeline, fail_calls
from tests.handlers.test_processor import accept, batch, record, records
from tests.tiers import examples


def rejecting(kind: str) -> Any:
    """A transform with a bug: it rejects every record of one `kind`."""
    from rtp_pipeline.contract import RejectRecord

    def transform(record: dict[str, Any], context: Any) -> dict[str, Any]:
        if record["data"].get("kind") == kind:
            raise RejectRecord(f"kind {kind} is not supported")
        return {"kind": record["data"].get("kind"), "n": record["data"].get("n"), "fixed": False}

    return transform


def fixed(record: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"kind": record["data"].get("kind"), "n": record["data"].get("n"), "fixed": True}


def counting(transform: Any, calls: list[str]) -> Any:
    """`transform`, noting each record id it is called with."""

    def counted(record: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(context.record_id)
        result: dict[str, Any] = transform(record, context)
        return result

    return counted


def use(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, transform: Any, version: str) -> None:
    module = pipeline.module("processor")
    monkeypatch.setattr(module.transform, "transform", transform)
    monkeypatch.setattr(module, "TRANSFORM_VERSION", version)


def counts(pipeline: Pipeline, batch_id: str) -> tuple[int, int, int]:
    view = batch(pipeline, batch_id)
    return view["processed"], view["rejected"], view["duplicates"]


def statuses(pipeline: Pipeline, ids: list[str]) -> Counter[str]:
    return Counter(view["status"] for view in records(pipeline, ids).values())


def mixed(count: int, every: int = 3) -> list[dict[str, Any]]:
    return [
        {"type": "t", "data": {"kind": "bad" if n % every == 0 else "good", "n": n}} for n in range(count)
    ]


def test_a_replay_of_rejected_records_after_a_fix_processes_them_and_touches_nothing_else(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    accepted = accept(pipeline, mixed(210))  # three chunks, ids the API assigned (leased writes)
    pipeline.drain()
    ids = accepted["ids"]
    bad = [record_id for n, record_id in enumerate(ids) if n % 3 == 0]
    assert counts(pipeline, accepted["batchId"]) == (210 - len(bad), len(bad), 0)
    untouched = pipeline.items(f"REC#{record_id}" for record_id in ids if record_id not in set(bad))

    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")
    [delivery] = pipeline.drain(replay=True)

    assert delivery.failures == []
    assert counts(pipeline, accepted["batchId"]) == (210, 0, 0)
    assert statuses(pipeline, ids) == Counter({"PROCESSED": 210})
    for record_id, view in records(pipeline, bad).items():
        assert view["result"] == {"kind": "bad", "n": ids.index(record_id), "fixed": True}
        assert (view["transformVersion"], view["replayId"], view["previousStatus"]) == (
            "v2",
            "replay-1",
            "REJECTED",
        )
        assert view["replayedAt"] == view["processedAt"]
        assert "reason" not in view
    # Nothing else touched: the records that were PROCESSED keep their items byte for byte.
    assert pipeline.items(untouched) == untouched
    assert all(item and item["v"] == "v1" for item in untouched.values())
    assert batch(pipeline, accepted["batchId"])["status"] == "COMPLETE"
    assert sorted((pipeline.item(f"BATCH#{accepted['batchId']}") or {})["rc"]) == [
        "replay-1:0",
        "replay-1:1",
        "replay-1:2",
    ]
    assert pipeline.queued() == pipeline.queued(pipeline.replay_queue_url) == 0


def test_a_resent_or_redelivered_replay_message_replays_and_counts_nothing_twice(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    accepted = accept(pipeline, mixed(120))
    pipeline.drain()
    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")
    pipeline.drain(replay=True)
    after_first = pipeline.items(f"REC#{record_id}" for record_id in accepted["ids"])
    capsys.readouterr()

    calls: list[str] = []
    use(pipeline, monkeypatch, counting(fixed, calls), "v3")
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")  # a resumed run sends it again
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")
    assert [d.failures for d in pipeline.drain(replay=True)] == [[], []]

    assert calls == []  # every chunk of replay-1 is settled: nothing transformed again
    assert counts(pipeline, accepted["batchId"]) == (120, 0, 0)
    assert pipeline.items(f"REC#{record_id}" for record_id in accepted["ids"]) == after_first
    # A replay's records are old: no ingest-to-processed latency from it, only what it replayed.
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emitted and all("IngestToProcessedLatency" not in doc for doc in emitted)
    assert [doc["RecordsReplayed"] for doc in emitted] == [[0.0], [0.0]]


def test_a_crash_between_the_replaced_items_and_the_counter_update_loses_and_doubles_nothing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replaced items are written, then the counter update fails: the redelivery finds the items
    marked with this replay (and the status they had), does not transform them again, and counts them."""
    from rtp_pipeline.aws import client

    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    accepted = accept(pipeline, mixed(150))
    pipeline.drain()
    use(pipeline, monkeypatch, fixed, "v2")
    failed = fail_calls(
        client("dynamodb"),
        "UpdateItem",
        lambda params: not failed and "SS" in params.get("ExpressionAttributeValues", {}).get(":c", {}),
        "InternalServerError",
        500,
    )
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")
    first = pipeline.deliver(replay=True)
    assert first.failures == first.message_ids and len(failed) == 1
    chunk = pipeline.items(f"REC#{r}" for r in accepted["ids"][:100])
    marked = [pk.removeprefix("REC#") for pk, item in chunk.items() if (item or {}).get("rp") == "replay-1"]
    assert len(marked) == 34  # chunk 0's rejected records: replaced, not counted yet
    assert counts(pipeline, accepted["batchId"]) == (100, 50, 0)

    calls: list[str] = []
    use(pipeline, monkeypatch, counting(fixed, calls), "v2")
    [redelivery] = pipeline.drain(replay=True)
    assert redelivery.failures == []
    assert not set(calls) & set(marked)  # chunk 0 is not transformed again
    assert counts(pipeline, accepted["batchId"]) == (150, 0, 0)


def test_a_replay_selects_by_reason_and_time_and_leaves_other_batches_ids_alone(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtp_pipeline.contract import RejectRecord

    def picky(record: dict[str, Any], context: Any) -> dict[str, Any]:
        kind = record["data"]["kind"]
        if kind != "good":
            raise RejectRecord(f"no {kind}")
        return {"kind": kind}

    use(pipeline, monkeypatch, picky, "v1")
    owner = accept(pipeline, [{"id": "shared", "type": "t", "data": {"kind": "bad"}}])
    pipeline.drain()
    accepted = accept(
        pipeline,
        [{"id": "shared", "type": "t", "data": {"kind": "good"}}]
        + [{"id": f"x{n}", "type": "t", "data": {"kind": ["bad", "ugly", "good"][n % 3]}} for n in range(9)],
    )
    pipeline.drain()
    assert counts(pipeline, accepted["batchId"]) == (3, 6, 1)

    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(accepted["batchId"], "only-ugly", reason="no ugly")
    pipeline.drain(replay=True)
    assert counts(pipeline, accepted["batchId"]) == (6, 3, 1)
    assert {record(pipeline, f"x{n}")["status"] for n in range(0, 9, 3)} == {"REJECTED"}  # "no bad": kept
    assert record(pipeline, "shared")["batchId"] == owner["batchId"]  # another batch's id: untouched
    assert record(pipeline, "shared")["status"] == "REJECTED"

    pipeline.send_replay(
        accepted["batchId"], "too-late", status="REJECTED", processed_from="2999-01-01T00:00:00Z"
    )
    pipeline.drain(replay=True)
    assert counts(pipeline, accepted["batchId"]) == (6, 3, 1)  # nothing processed in that window
    pipeline.send_replay(accepted["batchId"], "everything")
    pipeline.drain(replay=True)
    assert counts(pipeline, accepted["batchId"]) == (9, 0, 1)
    assert counts(pipeline, owner["batchId"]) == (0, 1, 0)


def test_a_replay_finishes_a_batch_that_never_completed(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch whose message went to the dead-letter queue (a transform bug) has uncounted chunks: a replay
    with the fixed transform processes them as a first delivery would, and counts them once."""
    module = pipeline.module("processor")

    def broken(record: dict[str, Any], context: Any) -> dict[str, Any]:
        raise ConnectionError("bug")

    use(pipeline, monkeypatch, broken, "v1")
    accepted = accept(pipeline, mixed(2))
    assert len(pipeline.drain()) == pipeline.max_receive_count  # then moved to the dead-letter queue
    assert pipeline.queued() == 0 and pipeline.queued(pipeline.dlq_url) == 1
    assert module.TRANSFORM_VERSION == "v1"
    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(accepted["batchId"], "finish")
    [delivery] = pipeline.drain(replay=True)
    assert delivery.failures == []
    assert counts(pipeline, accepted["batchId"]) == (2, 0, 0)
    assert {view["transformVersion"] for view in records(pipeline, accepted["ids"]).values()} == {"v2"}


def test_a_replay_message_that_ran_out_of_time_goes_back_to_the_replay_queue(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtp_cli.local.worker import LocalLambdaContext

    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    accepted = accept(pipeline, mixed(6))
    pipeline.drain()
    use(pipeline, monkeypatch, fixed, "v2")
    readings = iter([10_000] + [1_000] * 100)  # then 1 s left: nothing starts
    monkeypatch.setattr(
        LocalLambdaContext, "get_remaining_time_in_millis", lambda self: next(readings, 1_000)
    )
    pipeline.send_replay(accepted["batchId"], "slow", status="REJECTED")
    start = len(pipeline.recorder.calls)
    delivery = pipeline.deliver(replay=True)
    handed_back = [
        call.params["QueueUrl"]
        for call in pipeline.recorder.since(start)
        if call.actor == "processor" and call.operation == "ChangeMessageVisibility"
    ]
    assert delivery.failures == delivery.message_ids
    assert handed_back == [pipeline.replay_queue_url]


def test_the_transform_version_is_its_declared_version_or_a_hash_of_its_source(tmp_path: Any) -> None:
    import importlib.util

    from rtp_pipeline.contract import transform_version

    def load(text: str) -> Any:
        path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.py"
        path.write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    body = "def transform(record, context):\n    return {}\n"
    first, same, edited = load(body), load(body), load(body + "# fixed\n")
    assert transform_version(first) == transform_version(same) != transform_version(edited)
    assert len(transform_version(first)) == 12
    assert transform_version(load('VERSION = "2026.11.29"\n' + body)) == "2026.11.29"


@settings(
    max_examples=examples(6),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=110),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),  # the kind the transform now rejects
            st.sampled_from([None, "PROCESSED", "REJECTED"]),  # the replay's status filter
            st.integers(min_value=1, max_value=3),  # how many times the message is delivered
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_counters_equal_the_stored_items_after_any_sequence_of_replays(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, kinds: list[str], steps: list[tuple[Any, ...]]
) -> None:
    """Any transform changes, any filters, any number of deliveries of each replay message: the batch's
    counters are always what its items say."""
    use(pipeline, monkeypatch, rejecting("a"), "v0")
    accepted = accept(
        pipeline, [{"type": "t", "data": {"kind": kind, "n": n}} for n, kind in enumerate(kinds)]
    )
    pipeline.drain()
    for number, (rejected_kind, status, deliveries) in enumerate(steps):
        use(pipeline, monkeypatch, rejecting(rejected_kind), f"v{number + 1}")
        filters = {"status": status} if status else {}
        for _ in range(deliveries):
            pipeline.send_replay(accepted["batchId"], f"replay-{number}", **filters)
        pipeline.drain(replay=True)
        found = statuses(pipeline, accepted["ids"])
        assert counts(pipeline, accepted["batchId"]) == (found["PROCESSED"], found["REJECTED"], 0)


def test_a_replay_counts_the_changes_another_replay_left_uncounted(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replay 1 replaces records, then its counter update fails; replay 2 takes the chunk before replay 1
    is redelivered. Replay 2 counts replay 1's left-over changes (and keeps the counted status of a record
    it replaces over one of them); replay 1's redelivery then counts nothing again."""
    from rtp_pipeline.aws import client

    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    accepted = accept(pipeline, mixed(60))
    pipeline.drain()
    assert counts(pipeline, accepted["batchId"]) == (40, 20, 0)

    use(pipeline, monkeypatch, fixed, "v2")
    failing = [True]
    failed = fail_calls(
        client("dynamodb"),
        "UpdateItem",
        lambda params: failing[0] and "SS" in params.get("ExpressionAttributeValues", {}).get(":c", {}),
        "InternalServerError",
        500,
    )
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")
    first = pipeline.deliver(replay=True)
    assert first.failures == first.message_ids and failed
    failing[0] = False
    # Replay 1's message stays away (its visibility timeout) while replay 2 runs.
    [held] = pipeline.sqs.receive_message(QueueUrl=pipeline.replay_queue_url, VisibilityTimeout=600)[
        "Messages"
    ]
    assert statuses(pipeline, accepted["ids"]) == Counter({"PROCESSED": 60})  # replaced, not counted
    assert counts(pipeline, accepted["batchId"]) == (40, 20, 0)

    use(pipeline, monkeypatch, rejecting("good"), "v3")  # replay 2: another transform, every record
    pipeline.send_replay(accepted["batchId"], "replay-2")
    assert [d.failures for d in pipeline.drain(replay=True)] == [[]]
    found = statuses(pipeline, accepted["ids"])
    assert found == Counter({"REJECTED": 40, "PROCESSED": 20})
    assert counts(pipeline, accepted["batchId"]) == (found["PROCESSED"], found["REJECTED"], 0)

    pipeline.sqs.change_message_visibility(
        QueueUrl=pipeline.replay_queue_url, ReceiptHandle=held["ReceiptHandle"], VisibilityTimeout=0
    )
    assert [d.failures for d in pipeline.drain(replay=True)] == [[]]
    assert counts(pipeline, accepted["batchId"]) == (20, 40, 0)


def test_a_replay_leaves_expired_records_alone_and_keeps_each_items_expiry(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    accepted = accept(pipeline, mixed(6))
    pipeline.drain()
    bad = [record_id for n, record_id in enumerate(accepted["ids"]) if n % 3 == 0]
    expired, kept = bad
    pipeline.dynamodb.update_item(  # past its TTL, not deleted yet (DynamoDB deletes expired items lazily)
        TableName=pipeline.table_name,
        Key={"pk": {"S": f"REC#{expired}"}},
        UpdateExpression="SET expiresAt = :past",
        ExpressionAttributeValues={":past": {"N": "1000"}},
    )
    expiry = (pipeline.item(f"REC#{kept}") or {})["expiresAt"]
    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(accepted["batchId"], "replay-1", status="REJECTED")
    pipeline.drain(replay=True)
    assert record(pipeline, expired)["status"] == "REJECTED" and "replayId" not in record(pipeline, expired)
    assert record(pipeline, kept)["status"] == "PROCESSED"
    assert (pipeline.item(f"REC#{kept}") or {})["expiresAt"] == expiry  # not extended past the batch item's
    assert counts(pipeline, accepted["batchId"]) == (5, 1, 0)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"id": ""}, "replay id"),
        ({"id": "x" * 65}, "replay id"),
        ({"id": "a b"}, "replay id"),
        ({"id": "r", "status": "DUPLICATE"}, "status"),
        ({"id": "r", "reason": 7}, "reason"),
        ({"id": "r", "processedFrom": "yesterday"}, "processed_from"),
        ({"id": "r", "processedTo": "2026-11-29T10:00:00"}, "processed_to"),  # no zone
    ],
)
def test_a_replay_request_the_processor_could_not_apply_is_refused_where_it_is_built(
    fields: dict[str, Any], problem: str
) -> None:
    from rtp_pipeline.storage import ReplayRequest

    with pytest.raises(ValueError, match=problem):
        ReplayRequest.from_dict(fields)
    assert (
        ReplayRequest.from_dict({"id": "r-1.b_2", "processedFrom": "2026-11-29T10:00:00Z"}).replay_id
        == "r-1.b_2"
    )


@settings(max_examples=examples(300), deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "status", "reason", "processedFrom", "processedTo", "other"]),
        st.one_of(
            st.none(), st.text(max_size=80), st.integers(), st.booleans(), st.lists(st.text(max_size=3))
        ),
    )
)
def test_any_replay_member_is_refused_cleanly_or_round_trips(fields: dict[str, Any]) -> None:
    """Whatever a replay message's `replay` member holds: a clear refusal (a missing id, a bad value), or a
    request that survives the message unchanged."""
    from rtp_pipeline.storage import ReplayRequest

    try:
        request = ReplayRequest.from_dict(fields)
    except (KeyError, ValueError):
        return
    assert ReplayRequest.from_dict(request.to_dict()) == request
    assert len(request.replay_id) <= 64


def test_a_batch_of_one_assigned_id_is_counted_by_its_record_with_no_counter_write(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record, id assigned by the API: the record item is the batch's count (`byRecord`). The processor
    writes the record and nothing on the batch item; the status, a redelivery and a replay all read or
    move only the record. A batch of one record the client named is still counted (its id may be
    another batch's, so its item alone cannot say whether this batch stored it)."""
    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    good = accept(pipeline, [{"type": "t", "data": {"kind": "good"}}])
    bad = accept(pipeline, [{"type": "t", "data": {"kind": "bad"}}])
    named = accept(pipeline, [{"id": "n-1", "type": "t", "data": {"kind": "good"}}])
    assert batch(pipeline, good["batchId"])["status"] == "IN_PROGRESS"  # the record is not stored yet
    start = len(pipeline.recorder.calls)
    pipeline.drain()

    writes = [
        call.params.get("Key", {}).get("pk", {}).get("S", "")
        for call in pipeline.recorder.since(start)
        if call.service == "dynamodb" and call.operation == "UpdateItem"
    ]
    assert writes == [f"BATCH#{named['batchId']}"]  # the named one's count; none for the other two
    assert counts(pipeline, good["batchId"]) == (1, 0, 0) and counts(pipeline, bad["batchId"]) == (0, 1, 0)
    assert counts(pipeline, named["batchId"]) == (1, 0, 0)
    assert (pipeline.item(f"BATCH#{good['batchId']}") or {}).get("byRecord") is True
    assert "byRecord" not in (pipeline.item(f"BATCH#{named['batchId']}") or {})
    assert (
        batch(pipeline, good["batchId"])["status"] == batch(pipeline, bad["batchId"])["status"] == "COMPLETE"
    )

    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(bad["batchId"], "replay-1", status="REJECTED")
    pipeline.send_replay(bad["batchId"], "replay-1", status="REJECTED")  # resent: replays nothing twice
    assert [d.failures for d in pipeline.drain(replay=True)] == [[], []]
    assert counts(pipeline, bad["batchId"]) == (1, 0, 0)
    assert record(pipeline, bad["ids"][0])["previousStatus"] == "REJECTED"
    item = pipeline.item(f"BATCH#{bad['batchId']}") or {}
    assert item["rc"] == ["replay-1:0"] and item["processed"] == item["rejected"] == 0


def test_a_claim_check_ingest_resends_keeps_what_an_earlier_message_stored(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idempotent retry of a batch not settled yet makes ingest send its claim check again: a new SQS
    message, received for the first time. An earlier message stored four of five records (under the chunk
    lease) and failed on the fifth; the resent one must read them as a redelivery does, not transform and
    overwrite them (the transform here draws a new value each call: only the first result is stored)."""
    draws = iter(range(1_000_000))
    failing = {"on": True}

    def flaky(record_in: dict[str, Any], context: Any) -> dict[str, Any]:
        if record_in["data"]["n"] == 4 and failing["on"]:
            raise RuntimeError("transient")
        return {"n": record_in["data"]["n"], "draw": next(draws)}

    use(pipeline, monkeypatch, flaky, "v1")
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-resent"}
    payload = {"records": [{"type": "t", "data": {"n": n}} for n in range(5)]}
    first = pipeline.post_records(payload, headers=headers)
    assert pipeline.deliver().failures  # four stored, the fifth not: the chunk lease given back
    stored = {record_id: record(pipeline, record_id)["result"] for record_id in first.body["ids"][:4]}
    assert pipeline.post_records(payload, headers=headers).status == 202  # not settled: sent again
    failing["on"] = False

    event = pipeline.receive(10)
    fresh = [m for m in event["Records"] if m["attributes"]["ApproximateReceiveCount"] == "1"]
    assert len(fresh) == 1 and json.loads(fresh[0]["body"])["resent"] is True
    pipeline.invoke("processor", {**event, "Records": fresh})

    assert {record_id: record(pipeline, record_id)["result"] for record_id in stored} == stored
    assert counts(pipeline, first.body["batchId"]) == (5, 0, 0)


def test_a_batch_of_one_from_before_the_flag_keeps_its_counters_through_processing_and_replay(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-record batch accepted before `byRecord` existed (no flag on its batch item or claim check, as
    in flight during an upgrade) is counted, and a replay moves its counters: only the flag, never the shape
    of the ids, stops the counting."""
    use(pipeline, monkeypatch, rejecting("bad"), "v1")
    old = accept(pipeline, [{"type": "t", "data": {"kind": "bad"}}])
    [message] = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url).get("Messages", [])
    pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])
    body = json.loads(message["Body"])
    assert body.pop("byRecord") is True
    pipeline.sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=json.dumps(body))
    pipeline.dynamodb.update_item(
        TableName=pipeline.table_name,
        Key={"pk": {"S": f"BATCH#{old['batchId']}"}},
        UpdateExpression="REMOVE byRecord",
    )
    pipeline.drain()
    item = pipeline.item(f"BATCH#{old['batchId']}") or {}
    assert (item["processed"], item["rejected"], item["cc"]) == (0, 1, [0])

    use(pipeline, monkeypatch, fixed, "v2")
    pipeline.send_replay(old["batchId"], "replay-old", status="REJECTED")
    pipeline.drain(replay=True)
    item = pipeline.item(f"BATCH#{old['batchId']}") or {}
    assert (item["processed"], item["rejected"]) == (1, 0)
    assert counts(pipeline, old["batchId"]) == (1, 0, 0)
