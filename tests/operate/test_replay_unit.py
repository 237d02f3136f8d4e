"""`rtp replay` without AWS: the rate limit on an injected clock, the window and selection parsing (property
tests over anything a user can type), the hour prefixes, the batch id's time, the raw prefix against the
template, and the command's refusals (exit 2, no traceback) before it reaches any environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rtp_pipeline.ingest import new_batch_id
from rtp_pipeline.storage import RawStore
from typer.testing import CliRunner

import rtp_cli.app as cli
from rtp_cli.replay import (
    DEFAULT_RATE,
    RAW_PREFIX,
    Candidate,
    ReplayError,
    Selection,
    TokenBucket,
    _groups,
    batch_time,
    check_selection,
    hour_prefixes,
    resolve_window,
)
from tests.tiers import examples

NOW = datetime(2026, 11, 29, 1, 30, tzinfo=UTC)
runner = CliRunner()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


# --- the rate limit --------------------------------------------------------------------------------------
def test_the_bucket_paces_messages_by_their_record_count() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, clock, clock.sleep)
    sent_at = []
    for _ in range(10):
        bucket.take(500)
        sent_at.append(clock.now)
    # one second's burst (1,000 records: two messages) at once, then one 500-record message per 0.5 s
    assert sent_at[:2] == [0.0, 0.0]
    assert sent_at[-1] == pytest.approx(4.0)
    assert bucket.waited == pytest.approx(4.0)


def test_a_message_larger_than_the_burst_still_goes_and_the_next_one_pays_for_it() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock, clock.sleep)
    bucket.take(500)  # 5 s worth of records at 100/s: goes with a full bucket
    assert clock.now == 0
    bucket.take(1)
    assert clock.now == pytest.approx(4.01)  # the debt (400) and the record itself


def test_rate_zero_never_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, clock, clock.sleep)
    for _ in range(100):
        bucket.take(500)
    assert clock.sleeps == []


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ReplayError, match="--rate"):
        TokenBucket(-1)


@settings(max_examples=examples(200), deadline=None)
@given(
    rate=st.floats(min_value=1, max_value=20_000),
    counts=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=60),
    pauses=st.lists(st.floats(min_value=0, max_value=3), max_size=60),
)
def test_records_sent_never_outrun_the_rate_plus_one_burst(
    rate: float, counts: list[int], pauses: list[float]
) -> None:
    """However messages come, what was sent by time t is at most rate x t plus one burst (a second's worth,
    or the largest message) plus the message in flight."""
    clock = FakeClock()
    bucket = TokenBucket(rate, clock, clock.sleep)
    sent = 0
    for index, count in enumerate(counts):
        if index < len(pauses):
            clock.now += pauses[index]
        bucket.take(count)
        sent += count
        assert sent <= rate * clock.now + max(rate, max(counts)) + count + 1e-6


def test_groups_keep_to_ten_entries_and_a_seconds_worth_of_records() -> None:
    candidates = [
        Candidate(f"B{n}", "k", "c", "r", records, 1) for n, records in enumerate([400] * 6 + [1] * 30)
    ]
    groups = list(_groups(candidates, 1000))
    assert [len(g) for g in groups] == [2, 2, 10, 10, 10, 2]  # 400 + 400 + 8 x 1 fit a second
    assert all(sum(c.records for c in g) <= 1000 for g in groups)
    assert [len(g) for g in _groups(candidates, 0)] == [10, 10, 10, 6]  # no limit: ten per call
    assert [c.batch_id for g in groups for c in g] == [c.batch_id for c in candidates]


def test_the_default_rate_is_a_tenth_of_the_tables_design_rate() -> None:
    from rtp_pipeline.storage import DESIGN_RECORDS_PER_SECOND

    assert DEFAULT_RATE == DESIGN_RECORDS_PER_SECOND / 10


# --- the window and the selection ------------------------------------------------------------------------
_TIMES = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))


@settings(max_examples=examples(200), deadline=None)
@given(
    since=st.one_of(
        st.text(max_size=30),
        _TIMES.map(lambda m: m.isoformat()),
        st.from_regex(r"[0-9]{1,7}[smhdw]", fullmatch=True),
    ),
    until=st.one_of(st.none(), st.text(max_size=30), _TIMES.map(lambda m: m.isoformat())),
)
def test_any_window_text_is_a_window_or_a_usage_error(since: str, until: str | None) -> None:
    try:
        start, end = resolve_window(since, until, NOW)
    except ReplayError as error:
        assert error.exit_code == 2 and error.message.startswith("--")
        return
    assert start.tzinfo is not None and start <= end and end - start <= timedelta(days=400)


@settings(max_examples=examples(200), deadline=None)
@given(
    since=st.one_of(st.none(), st.text(max_size=10)),
    until=st.one_of(st.none(), st.text(max_size=10)),
    batch_ids=st.lists(st.one_of(st.text(max_size=30), st.builds(new_batch_id)), max_size=3),
    status=st.one_of(st.none(), st.sampled_from(["PROCESSED", "REJECTED", "processed", "DONE", ""])),
    reason=st.one_of(st.none(), st.text(max_size=10), st.text(min_size=495, max_size=505)),
)
def test_any_selection_is_checked_or_refused_as_a_usage_error(
    since: str | None, until: str | None, batch_ids: list[str], status: str | None, reason: str | None
) -> None:
    selection = Selection(since, until, tuple(batch_ids), status, reason)
    try:
        check_selection(selection)
    except ReplayError as error:
        assert error.exit_code == 2
        return
    assert since is not None or batch_ids
    assert until is None or since is not None
    assert status in (None, "PROCESSED", "REJECTED")
    assert reason is None or (status == "REJECTED" and reason.strip() and len(reason) <= 500)
    assert all(len(batch_id) == 26 for batch_id in batch_ids)


@settings(max_examples=examples(300), deadline=None)
@given(start=_TIMES, span=st.integers(min_value=0, max_value=72 * 3600 * 1000), offset=st.floats(0, 1))
def test_every_moment_of_a_window_is_under_one_of_its_hour_prefixes(
    start: datetime, span: int, offset: float
) -> None:
    end = start + timedelta(milliseconds=span)
    prefixes = hour_prefixes(start, end)
    inside = start + (end - start) * offset
    key = RawStore(None, "bucket", RAW_PREFIX).key_for(new_batch_id(), inside)  # where ingest puts it
    assert any(key.startswith(prefix) for prefix in prefixes)
    assert len(prefixes) == len(set(prefixes)) <= span // 3_600_000 + 2
    assert prefixes == sorted(prefixes)


@given(moment=_TIMES)
def test_a_batch_ids_time_is_when_it_was_received(moment: datetime) -> None:
    assert batch_time(new_batch_id(int(moment.timestamp() * 1000))) == moment


def test_the_raw_prefix_is_the_stacks(cached_templates: Mapping[str, dict[str, Any]]) -> None:
    functions = [
        r for r in cached_templates["local"]["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
    ]
    prefixes = {
        f["Properties"]["Environment"]["Variables"].get("RAW_PREFIX")
        for f in functions
        if "RAW_PREFIX" in f["Properties"].get("Environment", {}).get("Variables", {})
    }
    assert prefixes == {RAW_PREFIX}


def test_a_selection_key_depends_on_the_environment_and_the_selection_not_the_order() -> None:
    a = Selection(batch_ids=("X", "Y"))
    assert a.key("local") == Selection(batch_ids=("Y", "X")).key("local")
    assert a.key("local") != a.key("dev") != Selection(batch_ids=("X",)).key("dev")


# --- the command's refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["replay"], "select what to replay"),
        (["replay", "--since", "soon"], "is neither an RFC 3339 time"),
        (["replay", "--batch", "nope"], "26 or 27 characters"),
        (["replay", "--since", "1h", "--reason", "x"], "add --status REJECTED"),
        (["replay", "--since", "1h", "--resume", "--restart"], "give one of them"),
        (["replay", "--since", "1h", "--env", "nosuchenv"], "nosuchenv"),
    ],
)
def test_the_command_refuses_bad_input_with_exit_2(
    args: list[str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTP_STATE_DIR", str(tmp_path))
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()) and "Traceback" not in result.output


def test_no_local_environment_running_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTP_STATE_DIR", str(tmp_path))
    result = runner.invoke(cli.app, ["replay", "--since", "1h", "--env", "local"])
    assert result.exit_code == 2 and "rtp deploy --env local" in " ".join(result.output.split())


def test_missing_outputs_are_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    state = {
        "url": "http://127.0.0.1:1/v1/",
        "region": "us-east-1",
        "access_key_id": "AKIALOCALTEST",
        "secret_access_key": "secret",
        "aws_endpoint_url": "http://127.0.0.1:1",
        "outputs": {"TableName": "t"},
        "pid": os.getpid(),
    }
    (tmp_path / "local.json").write_text(json.dumps(state))
    monkeypatch.setenv("RTP_STATE_DIR", str(tmp_path))
    result = runner.invoke(cli.app, ["replay", "--since", "1h", "--env", "local"])
    assert result.exit_code == 2, result.output
    assert "no output 'RawBucketName'" in " ".join(result.output.split())


def test_no_aws_credentials_are_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("RTP_STATE_DIR", str(tmp_path))
    result = runner.invoke(cli.app, ["replay", "--since", "1h", "--env", "dev"])
    assert result.exit_code == 2, result.output
    assert "credentials" in result.output and "Traceback" not in result.output


# --- the AWS limits the service keeps to -------------------------------------------------------------------
class _FakeDb:
    """BatchGetItem as DynamoDB documents it: at most 100 keys a call, some keys may come back unprocessed
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html)."""

    def __init__(self, table: str) -> None:
        self.table, self.calls = table, []  # type: ignore[var-annotated]
        self.held_back = True

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        keys = RequestItems[self.table]["Keys"]
        self.calls.append(len(keys))
        if len(keys) > 100:
            raise AssertionError("ValidationException: Too many items requested for the BatchGetItem call")
        served, unprocessed = keys, []
        if self.held_back:  # the first call leaves its last key for later, as throttling does
            served, unprocessed, self.held_back = keys[:-1], keys[-1:], False
        items = [
            {"pk": key["pk"], "batchId": {"S": key["pk"]["S"].removeprefix("BATCH#")}, "accepted": {"N": "1"}}
            for key in served
        ]
        answer: dict[str, Any] = {"Responses": {self.table: items}}
        if unprocessed:
            answer["UnprocessedKeys"] = {self.table: {**RequestItems[self.table], "Keys": unprocessed}}
        return answer


def test_batch_items_are_read_100_keys_a_call_and_unprocessed_keys_are_asked_again() -> None:
    from types import SimpleNamespace

    from rtp_cli.replay import _batch_items

    db = _FakeDb("t")
    batch_ids = [new_batch_id() for _ in range(250)]
    waits: list[float] = []
    found = _batch_items(SimpleNamespace(db=db, name="t"), batch_ids, waits.append)
    assert set(found) == set(batch_ids)
    assert db.calls == [100, 1, 100, 50] and len(waits) == 1  # the held-back key, after a backoff


def test_every_reason_the_command_accepts_makes_a_replay_message() -> None:
    """The command's limit is the message's: ReplayRequest refuses one character more."""
    from rtp_pipeline.storage import ReplayRequest

    from rtp_cli.replay import MAX_REASON_CHARS

    check_selection(Selection(since="1h", status="REJECTED", reason="x" * MAX_REASON_CHARS))
    ReplayRequest("r-1", status="REJECTED", reason="x" * MAX_REASON_CHARS)
    with pytest.raises(ReplayError, match="at most 500"):
        check_selection(Selection(since="1h", status="REJECTED", reason="x" * (MAX_REASON_CHARS + 1)))
    with pytest.raises(ValueError, match="1-500"):
        ReplayRequest("r-1", status="REJECTED", reason="x" * (MAX_REASON_CHARS + 1))


def test_every_replay_id_is_one_a_replay_message_takes() -> None:
    from rtp_pipeline.storage import ReplayRequest

    from rtp_cli.replay import new_replay_id

    for _ in range(50):
        ReplayRequest(new_replay_id())
