"""Raw retention and the replay window (issue 12): the S3 rules a retention choice must obey, each with a
config that breaks it (refused, the message naming the key) and the boundary that passes; and the pure
functions `rtp replay --dry-run` calls. No CDK here: these run in the fast tier."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.config import ConfigError, EnvironmentConfig, load_config
from stack.retention import (
    REFUSED_CLASSES,
    REPLAYABLE_CLASSES,
    TRANSITION_MIN_OBJECT_BYTES,
    ReplayWindow,
    lifecycle_problems,
    replay_window,
    storage_note,
    window_check,
)
from tests.conftest import ROOT


def load(tmp_path: Path, retention: str, extra: str = "") -> EnvironmentConfig:
    (tmp_path / "env.yaml").write_text(f"retention:\n{retention}{extra}", encoding="utf-8")
    return load_config("env", config_dir=tmp_path)


def refused(tmp_path: Path, retention: str, extra: str = "") -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, retention, extra)
    message = str(caught.value)
    assert str(tmp_path / "env.yaml") in message
    return message


def lines(expire: int, after: int | None = None, cls: str | None = None, ttl: int = 3650) -> str:
    text = f"  raw_objects_days: {expire}\n  record_ttl_days: {ttl}\n"
    if after is not None:
        text += f"  raw_transition_days: {after}\n"
    if cls is not None:
        text += f"  raw_storage_class: {cls}\n"
    return text


# --- the rules, one at a time ----------------------------------------------------------------------------


def test_no_transition_is_the_default_and_keeps_raw_requests_in_standard(tmp_path: Path) -> None:
    config = load(tmp_path, lines(7, ttl=90))
    assert config.retention.raw_transition_days is None and config.retention.raw_storage_class is None
    assert replay_window(config) == ReplayWindow("env", 7, 90, None, None)


@pytest.mark.parametrize("cls", ["STANDARD_IA", "ONEZONE_IA"])
def test_infrequent_access_needs_30_days_in_standard_first(tmp_path: Path, cls: str) -> None:
    # S3: "you must store them at least 30 days in the S3 Standard storage class" before IA or One Zone-IA.
    message = refused(tmp_path, lines(120, 29, cls))
    assert "retention.raw_transition_days is 29" in message
    assert f"moves objects to {cls} only after at least 30 days" in message
    assert load(tmp_path, lines(120, 30, cls)).retention.raw_transition_days == 30


def test_glacier_instant_retrieval_takes_any_transition_day(tmp_path: Path) -> None:
    config = load(tmp_path, lines(91, 1, "GLACIER_IR"))
    assert config.retention.raw_storage_class == "GLACIER_IR"
    assert REPLAYABLE_CLASSES["GLACIER_IR"].min_transition_days == 0


@pytest.mark.parametrize(("cls", "minimum"), [("STANDARD_IA", 30), ("ONEZONE_IA", 30), ("GLACIER_IR", 90)])
def test_expiring_before_the_minimum_storage_charge_is_refused(
    tmp_path: Path, cls: str, minimum: int
) -> None:
    # S3 bills IA and One Zone-IA at least 30 days, Glacier Instant Retrieval at least 90.
    after = 30
    message = refused(tmp_path, lines(after + minimum - 1, after, cls))
    assert f"retention.raw_objects_days is {after + minimum - 1}" in message
    assert f"spend {minimum - 1} day(s) in {cls}, which bills at least {minimum} days" in message
    assert f"raise raw_objects_days to at least {after + minimum}" in message
    assert load(tmp_path, lines(after + minimum, after, cls)).retention.raw_objects_days == after + minimum


def test_expiring_before_the_transition_is_refused(tmp_path: Path) -> None:
    # S3 refuses an expiration that does not come after the transition; the minimum charge rule covers it.
    message = refused(tmp_path, lines(30, 40, "GLACIER_IR"))
    assert "spend -10 day(s) in GLACIER_IR" in message


@pytest.mark.parametrize("cls", sorted(REFUSED_CLASSES))
def test_classes_a_replay_cannot_read_at_once_are_refused(tmp_path: Path, cls: str) -> None:
    message = refused(tmp_path, lines(400, 30, cls))
    assert f"retention.raw_storage_class = '{cls}'" in message
    assert "STANDARD_IA, ONEZONE_IA, GLACIER_IR" in message
    if cls in ("GLACIER", "DEEP_ARCHIVE"):
        assert "RestoreObject" in message and "InvalidObjectState" in message


def test_an_unknown_storage_class_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, lines(400, 30, "CHEAP"))
    assert "retention.raw_storage_class = 'CHEAP'" in message
    assert "must be one of STANDARD_IA, ONEZONE_IA, GLACIER_IR" in message


@pytest.mark.parametrize(("after", "cls"), [(30, None), (None, "STANDARD_IA")])
def test_transition_days_and_class_go_together(tmp_path: Path, after: int | None, cls: str | None) -> None:
    message = refused(tmp_path, lines(120, after, cls))
    assert "retention.raw_transition_days" in message and "retention.raw_storage_class" in message
    assert "they go together" in message


def test_raw_requests_may_not_outlive_their_batch_items(tmp_path: Path) -> None:
    # A replay needs the batch item (counters) as well as the raw object.
    message = refused(tmp_path, lines(31, ttl=30))
    assert "retention.raw_objects_days (31) is longer than retention.record_ttl_days (30)" in message
    assert load(tmp_path, lines(30, ttl=30)).retention.raw_objects_days == 30


def test_a_transition_no_raw_object_can_take_is_refused(tmp_path: Path) -> None:
    # S3 Lifecycle does not transition objects under 128 KB by default; a raw object is one request body.
    small = f"api:\n  max_body_bytes: {TRANSITION_MIN_OBJECT_BYTES - 1}\n"
    message = refused(tmp_path, lines(120, 30, "GLACIER_IR"), small)
    assert f"api.max_body_bytes is {TRANSITION_MIN_OBJECT_BYTES - 1}" in message
    assert "smaller than 128 KB" in message
    just_enough = f"api:\n  max_body_bytes: {TRANSITION_MIN_OBJECT_BYTES}\n"
    assert load(tmp_path, lines(120, 30, "GLACIER_IR"), just_enough).api.max_body_bytes == 131072
    # Without a transition, small bodies are fine.
    assert load(tmp_path, lines(7, ttl=90), small).api.max_body_bytes == TRANSITION_MIN_OBJECT_BYTES - 1


def test_every_broken_rule_is_reported_at_once(tmp_path: Path) -> None:
    message = refused(tmp_path, lines(40, 20, "STANDARD_IA", ttl=35))
    assert "at least 30 days in S3 Standard" in message
    assert "bills at least 30 days" in message
    assert "longer than retention.record_ttl_days (35)" in message


@given(
    expire=st.integers(1, 3650),
    after=st.none() | st.integers(1, 3650),
    cls=st.none() | st.sampled_from(sorted(REPLAYABLE_CLASSES)),
    ttl=st.integers(1, 3650),
)
def test_the_rules_accept_exactly_what_s3_and_replay_allow(
    expire: int, after: int | None, cls: str | None, ttl: int
) -> None:
    """An independent statement of the rules: valid iff both-or-neither, S3's transition minimum, S3's
    minimum storage charge, and raw within the record TTL."""
    rules = REPLAYABLE_CLASSES.get(cls or "")
    valid = expire <= ttl and (
        (after is None and cls is None)
        or (
            after is not None
            and rules is not None
            and after >= rules.min_transition_days
            and expire - after >= rules.min_storage_days
        )
    )
    assert (lifecycle_problems(expire, after, cls, ttl) == []) == valid


def test_shipped_environments_choose_explicitly() -> None:
    windows = {env: replay_window(load_config(env)) for env in ("dev", "staging", "prod", "local")}
    assert windows["prod"] == ReplayWindow("prod", 365, 365, 30, "GLACIER_IR")
    for env in ("dev", "staging", "local"):
        assert windows[env].storage_class_after is None, env
    for env, window in windows.items():
        assert window.days <= window.record_ttl_days, env
    text = (ROOT / "config" / "prod.yaml").read_text(encoding="utf-8")
    assert "raw_storage_class: GLACIER_IR" in text


# --- the replay window --------------------------------------------------------------------------------

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
PROD = ReplayWindow("prod", 120, 365, 30, "GLACIER_IR")
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


def test_a_window_inside_the_retention_passes() -> None:
    assert window_check(PROD, NOW - timedelta(days=120), NOW) is None
    assert window_check(PROD, NOW - timedelta(hours=1), NOW) is None


def test_a_window_past_the_retention_says_so_and_where_it_starts() -> None:
    message = window_check(PROD, NOW - timedelta(days=200), NOW)
    assert message is not None
    assert "--since 2026-05-13T12:00:00Z reaches 200 days back" in message
    assert "prod keeps raw requests 120 day(s) (retention.raw_objects_days)" in message
    assert "use --since 2026-08-01T12:00:00Z or later" in message


def test_a_window_one_second_too_old_is_refused() -> None:
    assert window_check(PROD, NOW - timedelta(days=120, seconds=1), NOW) is not None


def test_times_without_a_timezone_are_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match=r"since = .* has no timezone"):
        window_check(PROD, datetime(2026, 11, 1), NOW)
    with pytest.raises(ValueError, match=r"now = .* has no timezone"):
        window_check(PROD, NOW, datetime(2026, 11, 29))


@given(since=moments, now=moments, days=st.integers(1, 3650))
def test_window_check_refuses_exactly_what_is_past_the_retention(
    since: datetime, now: datetime, days: int
) -> None:
    window = ReplayWindow("env", days, days, None, None)
    message = window_check(window, since, now)
    assert (message is None) == (now - since <= timedelta(days=days))
    if message is not None:
        assert "retention.raw_objects_days" in message
        # The suggested --since is itself accepted.
        suggested = message.rsplit("use --since ", 1)[1].removesuffix(" or later")
        start = datetime.strptime(suggested, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert window_check(window, start, now) is None
        assert start - window.oldest_kept(now) < timedelta(seconds=1)


@given(since=moments, now=moments, offset=st.integers(-14, 14))
def test_window_check_does_not_depend_on_the_timezone_given(
    since: datetime, now: datetime, offset: int
) -> None:
    zone = timezone(timedelta(hours=offset))
    assert window_check(PROD, since, now) == window_check(PROD, since.astimezone(zone), now.astimezone(zone))


def test_storage_note_names_the_colder_part_of_the_window() -> None:
    assert storage_note(PROD, NOW - timedelta(days=29), NOW) is None
    note = storage_note(PROD, NOW - timedelta(days=60), NOW)
    assert note is not None
    assert "before 2026-10-30T12:00:00Z are in S3 Glacier Instant Retrieval (GLACIER_IR" in note
    assert "retrieval fee" in note
    assert storage_note(ReplayWindow("dev", 3, 14, None, None), NOW - timedelta(days=3), NOW) is None


@pytest.mark.process
def test_the_replay_functions_import_without_the_cdk() -> None:
    """`rtp replay` calls them; the CLI must not load jsii (seconds of Node start-up)."""
    code = (
        "import sys, stack.retention, stack.config; "
        "sys.exit(1 if {'jsii', 'aws_cdk'} & set(sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_the_local_runtime_applies_the_same_lifecycle_rule() -> None:
    """`--env local` builds the raw bucket from the same template: a transition reaches moto's bucket."""
    import boto3
    from moto import mock_aws

    from rtp_cli.local.resources import _lifecycle_rule

    rule = {
        "Id": "expire-raw-requests",
        "Status": "Enabled",
        "Prefix": "raw/",
        "ExpirationInDays": 120,
        "Transitions": [{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}],
    }
    with mock_aws():
        s3: Any = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="raw-bucket")
        s3.put_bucket_lifecycle_configuration(
            Bucket="raw-bucket", LifecycleConfiguration={"Rules": [_lifecycle_rule(rule)]}
        )
        (stored,) = s3.get_bucket_lifecycle_configuration(Bucket="raw-bucket")["Rules"]
    assert stored["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER_IR"}]
    assert stored["Expiration"] == {"Days": 120}


def test_the_readme_documents_every_retention_key_and_cites_the_rules() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for key in ("raw_objects_days", "raw_transition_days", "raw_storage_class", "record_ttl_days"):
        assert f"`retention.{key}`" in readme or f"`.{key}`" in readme, key
    source = (ROOT / "stack" / "retention.py").read_text(encoding="utf-8")
    for page in (
        "lifecycle-transition-general-considerations.html",
        "storage-class-intro.html#sc-compare",
        "aws-properties-s3-bucket-lifecycleconfig.html",
        "InvalidObjectState.html",
    ):
        assert page in readme and page in source, page


def test_rtp_cost_prices_every_class_the_config_allows() -> None:
    from rtp_cli.cost import RAW_CLASS_PRICES
    from rtp_cli.pricing import PRICES

    assert set(RAW_CLASS_PRICES) == set(REPLAYABLE_CLASSES)
    for storage_key, transition_key in RAW_CLASS_PRICES.values():
        assert PRICES[storage_key].known and PRICES[transition_key].known
        cheaper, standard = PRICES[storage_key].usd, PRICES["s3.storage_gb_month"].usd
        assert cheaper is not None and standard is not None and cheaper < standard  # else why move
