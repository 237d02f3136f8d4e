"""`rtp send` services against a small HTTP server this test controls (no local runtime needed)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import given
from hypothesis import strategies as st

from rtp_cli.operate.api_client import ApiClient, ApiResponse
from rtp_cli.operate.inputs import Batch, InputOptions, InvalidLine, batches, line_ranges, read_items
from rtp_cli.operate.journal import Journal, JournalError
from rtp_cli.operate.send import (
    BulkOptions,
    RetryPolicy,
    SendSummary,
    bulk_send,
    smoke_test,
    wait_for_batches,
)
from tests.operate.fake_api import FakeState, fake_api

CREDS = ReadOnlyCredentials("AKIDEXAMPLE", "secret", None)
FAST = RetryPolicy(max_attempts=6, base_seconds=0.001, cap_seconds=0.01)


@pytest.fixture
def api() -> Iterator[tuple[ApiClient, FakeState]]:
    with fake_api() as (url, state):
        yield ApiClient(url, "us-east-1", lambda: CREDS, timeout=5), state


def write_jsonl(path: Path, count: int, bad: dict[int, str] | None = None, ids: bool = False) -> Path:
    """`count` records; `bad` maps a 1-based line number to a raw line replacing the record."""
    lines = []
    for n in range(1, count + 1):
        if bad and n in bad:
            lines.append(bad[n])
        else:
            record = {"type": "reading", "data": {"n": n}}
            if ids:
                record["id"] = f"r-{n}"
            lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def run(client: ApiClient, path: Path, tmp: Path, **overrides: object) -> SendSummary:
    options = {
        "env": "test",
        "max_records": 50,
        "max_bytes": 1_000_000,
        "concurrency": 4,
        "journal_dir": tmp / "journals",
        **overrides,
    }
    return bulk_send(
        lambda: path.open("rb"),
        str(path),
        client,
        BulkOptions(**options),  # type: ignore[arg-type]
        InputOptions(),
        policy=FAST,
    )


# --- input parsing and batching -----------------------------------------------------------------------


def test_invalid_lines_are_reported_with_their_line_numbers() -> None:
    text = "\n".join(
        [
            '{"type": "t", "data": {"a": 1}}',
            "{not json",
            "",
            "[1, 2]",
            '{"type": "t"}',
            '{"type": "t", "data": {}, "colour": "red"}',
            '{"id": "x", "type": "t", "data": {"a": 1}}',
            '{"id": "x", "type": "t", "data": {"a": 2}}',
        ]
    )
    items = list(read_items(io.BytesIO(text.encode()), InputOptions()))
    invalid = {item.line: item.reason for item in items if isinstance(item, InvalidLine)}
    assert sorted(invalid) == [2, 4, 5, 6, 8]
    assert "not valid JSON" in invalid[2]
    assert "must be a JSON object" in invalid[4]
    assert "data is required" in invalid[5]
    assert "colour is not allowed" in invalid[6]
    assert "already used on line 7" in invalid[8]
    assert [item.line for item in items if not isinstance(item, InvalidLine)] == [1, 7]


def test_csv_columns_become_data_with_the_given_type() -> None:
    text = "sensor,value\ns1,10\ns2\n\ns3,30\n"
    items = list(
        read_items(
            io.BytesIO(text.encode()), InputOptions(fmt="csv", record_type="reading", id_column="sensor")
        )
    )
    good = [item for item in items if not isinstance(item, InvalidLine)]
    assert [(item.line, item.record) for item in good] == [
        (2, {"data": {"sensor": "s1", "value": "10"}, "id": "s1", "type": "reading"}),
        (5, {"data": {"sensor": "s3", "value": "30"}, "id": "s3", "type": "reading"}),
    ]
    assert [(i.line, i.reason) for i in items if isinstance(i, InvalidLine)] == [
        (3, "has 1 columns; the header has 2")
    ]


def test_batches_respect_record_and_byte_limits_deterministically() -> None:
    text = "\n".join(json.dumps({"type": "t", "data": {"pad": "x" * (n % 7) * 20}}) for n in range(200))

    def cut() -> list[tuple[list[int], bytes]]:
        invalid: list[InvalidLine] = []
        items = read_items(io.BytesIO(text.encode()), InputOptions())
        return [(b.lines, b.body()) for b in batches(items, max_records=30, max_bytes=1500, invalid=invalid)]

    first = cut()
    assert first == cut()
    assert sum(len(lines) for lines, _ in first) == 200
    assert all(len(lines) <= 30 and len(body) <= 1500 for lines, body in first)
    assert any(len(body) > 1400 for _, body in first)  # the byte limit, not the count, cut some batches
    for lines, body in first:
        assert len(json.loads(body)["records"]) == len(lines)


def test_a_record_larger_than_the_body_limit_is_reported_not_dropped() -> None:
    text = (
        json.dumps({"type": "t", "data": {"big": "x" * 2000}})
        + "\n"
        + json.dumps({"type": "t", "data": {"a": 1}})
    )
    invalid: list[InvalidLine] = []
    cut = list(batches(read_items(io.BytesIO(text.encode()), InputOptions()), 10, 1024, invalid))
    assert [b.lines for b in cut] == [[2]]
    assert invalid[0].line == 1 and "the API takes at most 1024" in invalid[0].reason


def test_line_ranges() -> None:
    assert line_ranges([7, 1, 2, 3, 9, 10]) == "1-3, 7, 9-10"
    assert line_ranges([]) == ""
    assert line_ranges(list(range(1, 40, 2)), limit=3).endswith("(17 more ranges)")


# --- bulk send ---------------------------------------------------------------------------------------


def test_bulk_load_sends_every_record_once(api: tuple[ApiClient, FakeState], tmp_path: Path) -> None:
    client, state = api
    path = write_jsonl(tmp_path / "in.jsonl", 1000)
    summary = run(client, path, tmp_path)
    assert summary.ok and summary.accepted_records == 1000 and summary.accepted_batches == 20
    assert state.stored_record_count() == 1000
    assert len(set(summary.batch_ids)) == 20


def test_throttling_and_dropped_connections_are_retried_with_the_same_key(
    api: tuple[ApiClient, FakeState], tmp_path: Path
) -> None:
    client, state = api
    state.faults = [429, "drop", 503, 429, 500, 429]
    state.fault_every = 4
    path = write_jsonl(tmp_path / "in.jsonl", 1000, ids=False)
    summary = run(client, path, tmp_path)
    assert summary.ok and summary.accepted_records == 1000
    assert summary.retries >= 6
    assert state.stored_record_count() == 1000  # nothing lost, nothing stored twice
    failed_keys = {key for key, status in state.attempts if status != 202}
    accepted_keys = [key for key, status in state.attempts if status == 202]
    assert failed_keys and failed_keys <= set(accepted_keys)  # each retry reused its batch's key
    assert len(accepted_keys) == len(set(accepted_keys)) == 20


def test_a_lost_answer_is_replayed_not_duplicated(api: tuple[ApiClient, FakeState], tmp_path: Path) -> None:
    """The first attempt reached the API but its answer was lost: the retry with the same key replays."""
    client, state = api
    path = write_jsonl(tmp_path / "in.jsonl", 100)
    original = client.post_records
    calls = {"n": 0}

    def lose_first_answer(body: bytes, key: str | None = None):
        calls["n"] += 1
        response = original(body, key)
        if calls["n"] == 1:
            import requests

            raise requests.ConnectionError("connection reset after the request was sent")
        return response

    client.post_records = lose_first_answer  # type: ignore[method-assign,assignment]
    summary = run(client, path, tmp_path, concurrency=1)
    assert summary.ok and summary.accepted_records == 100 and summary.replayed_batches == 1
    assert state.stored_record_count() == 100 and len(state.batches) == 2


def test_retries_give_up_and_report_failed_lines(api: tuple[ApiClient, FakeState], tmp_path: Path) -> None:
    client, state = api
    state.faults = [503] * 6
    path = write_jsonl(tmp_path / "in.jsonl", 120)
    summary = run(client, path, tmp_path, concurrency=1)
    assert not summary.ok
    assert summary.failed_records == 50 and summary.failed[0][0] == list(range(1, 51))
    assert "gave up after 6 attempts; last: HTTP 503" in summary.failed[0][1]
    assert summary.accepted_records == 70


def test_bad_lines_and_api_refusals_carry_line_numbers(
    api: tuple[ApiClient, FakeState], tmp_path: Path
) -> None:
    client, _ = api
    path = write_jsonl(tmp_path / "in.jsonl", 30, bad={3: "nope", 17: '{"type": "t", "data": []}'})
    summary = run(client, path, tmp_path)
    assert not summary.ok and summary.accepted_records == 28
    assert [(p.line, p.reason.split(":")[0]) for p in summary.rejected] == [
        (3, "not valid JSON"),
        (17, "data must be of type object"),
    ]


def test_api_400_details_map_back_to_input_lines(
    api: tuple[ApiClient, FakeState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = api
    path = write_jsonl(tmp_path / "in.jsonl", 10, bad={4: json.dumps({"data": {"a": 1}})})
    opts = InputOptions(record_type=None)
    # Bypass the local check so the API's answer is what maps lines: validate nothing locally.
    from rtp_cli.operate import inputs

    monkeypatch.setattr(inputs.validation, "validate_record", lambda record: [])
    summary = bulk_send(
        lambda: path.open("rb"),
        "x",
        client,
        BulkOptions(env="t", max_records=5, max_bytes=100_000, journal_dir=None),
        opts,
        policy=FAST,
    )
    assert summary.accepted_records == 5
    reasons = {p.line: p.reason for p in summary.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "records[3].type is required" in reasons[4]
    assert "batch refused (HTTP 400" in reasons[1]


# --- journal and resume --------------------------------------------------------------------------------


def test_resume_skips_accepted_batches_and_reuses_keys(
    api: tuple[ApiClient, FakeState], tmp_path: Path
) -> None:
    client, state = api
    path = write_jsonl(tmp_path / "in.jsonl", 500)
    journal_dir = tmp_path / "journals"
    first = run(client, path, tmp_path, concurrency=1, max_records=50)
    assert first.ok
    journal_file = next(journal_dir.glob("*.jsonl"))
    entries = [json.loads(line) for line in journal_file.read_text().splitlines()]
    # Rewrite history into a run killed after 4 accepted batches, batch 4 sent (it reached the API) but
    # its answer lost. Batches 5-9 also reached the API in the first run: their keys derive from the
    # run id, so the resumed run's requests are replayed, not stored again.
    kept = [e for e in entries if e["kind"] == "run"]
    kept += [e for e in entries if e["kind"] in ("sending", "accepted") and e["batch"] <= 3]
    kept += [e for e in entries if e["kind"] == "sending" and e["batch"] == 4]
    journal_file.write_text("".join(json.dumps(e) + "\n" for e in kept) + '{"kind":"sen')  # torn last line
    state.attempts.clear()
    posts_before = len(state.batches)

    with pytest.raises(JournalError, match="--resume"):
        run(client, path, tmp_path, concurrency=1, max_records=50)
    resumed = run(client, path, tmp_path, concurrency=1, max_records=50, resume=True)
    assert resumed.ok and resumed.resumed
    assert resumed.accepted_records == 500 and resumed.resumed_records == 200
    assert len(state.attempts) == 6  # batches 4..9, none of 0..3
    assert resumed.replayed_batches == 6  # all were sent before under the same keys: replayed, not re-stored
    assert len(state.batches) == posts_before and state.stored_record_count() == 500
    assert Journal._load(journal_file).done


def test_a_completed_input_can_be_sent_again_on_purpose(
    api: tuple[ApiClient, FakeState], tmp_path: Path
) -> None:
    client, state = api
    path = write_jsonl(tmp_path / "in.jsonl", 60)
    assert run(client, path, tmp_path).ok
    again = run(client, path, tmp_path)
    assert again.ok and again.replayed_batches == 0 and len(state.batches) == 4


def test_403_stops_the_run(tmp_path: Path) -> None:
    with fake_api() as (url, _):
        client = ApiClient(url, "us-east-1", lambda: CREDS)
        client.request = lambda *a, **k: __import__("rtp_cli.operate.api_client", fromlist=["x"]).ApiResponse(  # type: ignore[method-assign]
            403, {"message": "The security token included in the request is invalid."}, {}
        )
        from rtp_cli.operate.send import FatalSendError

        with pytest.raises(FatalSendError, match="403"):
            run(client, write_jsonl(tmp_path / "in.jsonl", 5), tmp_path)


# --- smoke test and waiting ----------------------------------------------------------------------


def test_smoke_test_passes_when_every_record_reaches_its_status(api: tuple[ApiClient, FakeState]) -> None:
    client, _ = api
    result = smoke_test(client, timeout=5, interval=0.01)
    assert result.ok, [(r.shape, r.status, r.detail) for r in result.records]
    assert [r.status for r in result.records] == [
        "PROCESSED",
        "PROCESSED",
        "PROCESSED",
        "REJECTED",
        "REJECTED",
    ]
    assert all(r.latency_ms is not None for r in result.records)
    assert result.records[2].record_id.endswith("-1")  # the API assigned the minimal record's id


def test_smoke_test_times_out_when_nothing_is_processed(api: tuple[ApiClient, FakeState]) -> None:
    client, state = api
    state.process = False
    result = smoke_test(client, timeout=0.3, interval=0.05)
    assert not result.ok and result.timed_out
    assert all("never processed" in r.detail for r in result.records)


def test_wait_for_batches_reports_pending(api: tuple[ApiClient, FakeState], tmp_path: Path) -> None:
    client, state = api
    summary = run(client, write_jsonl(tmp_path / "in.jsonl", 100), tmp_path)
    report = wait_for_batches(client, summary.batch_ids, timeout=1)
    assert report.complete == 2 and report.processed == 100 and not report.pending_batches
    state.process = False
    report = wait_for_batches(client, summary.batch_ids, timeout=0.2, interval=0.05)
    assert report.complete == 0 and len(report.pending_batches) == 2


class _Batches:
    """A fake API client whose batches complete in order, one more per poll round (GET /batches)."""

    def __init__(self, count: int, complete_per_round: int = 1, stuck: str | None = None) -> None:
        self.ids = [f"b{n:03d}" for n in range(count)]
        self.done = 0
        self.polls: list[str] = []
        self.per_round, self.stuck = complete_per_round, stuck

    def get_batch(self, batch_id: str) -> ApiResponse:
        self.polls.append(batch_id)
        complete = self.ids.index(batch_id) < self.done and batch_id != self.stuck
        status = "COMPLETE" if complete else "IN_PROGRESS"
        return ApiResponse(200, {"status": status, "processed": 1 if complete else 0}, {})

    def tick(self, _: float) -> None:
        self.done += self.per_round


def test_waiting_polls_each_batch_about_once_not_once_per_round(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _Batches(50, complete_per_round=5)
    monkeypatch.setattr("rtp_cli.operate.send.time.sleep", batches.tick)
    report = wait_for_batches(batches, batches.ids, timeout=60)  # type: ignore[arg-type]
    assert report.complete == 50 and report.processed == 50 and not report.pending_batches
    # Each round polls the completed ones once and stops at the first still running: 50 + 11 rounds.
    assert len(batches.polls) <= 50 + 11
    assert len(set(batches.polls)) == 50


def test_the_last_round_polls_every_batch_left_so_completed_ones_behind_a_stuck_one_count() -> None:
    batches = _Batches(5, stuck="b000")
    batches.done = 5  # all done but the first, which never completes
    report = wait_for_batches(batches, batches.ids, timeout=0)  # type: ignore[arg-type]
    assert report.complete == 4 and report.pending_batches == ["b000"]


@given(st.lists(st.binary(max_size=40), max_size=30), st.binary(max_size=40))
def test_a_batch_knows_its_body_size_with_one_more_record(encoded: list[bytes], more: bytes) -> None:
    batch = Batch(0)
    for line, record in enumerate(encoded, start=1):
        batch.add(line, record)
    grown = Batch(0)
    for line, record in enumerate([*encoded, more], start=1):
        grown.add(line, record)
    assert batch.size_with(more) == len(grown.body())
    assert batch.count == len(encoded) and batch.encoded == encoded
