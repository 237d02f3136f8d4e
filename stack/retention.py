"""Raw retention and the replay window: which S3 storage classes the raw bucket may move requests to, the
S3 rules a retention choice must obey, and what `rtp replay` can still reach.

Plain Python (no aws_cdk, no pydantic models of its own): `stack/config.py` validates with these rules, the
stack builds the bucket's lifecycle from them, and the CLI (`rtp replay --dry-run`) calls `replay_window()`
and `window_check()` without loading jsii.

The S3 facts, each with the page it was read from:

- Transition minimum: objects must stay at least 30 days in S3 Standard before a lifecycle rule may move
  them to S3 Standard-IA or S3 One Zone-IA ("Minimum Days for Transition"); S3 Glacier Instant Retrieval
  takes any number of days, 0 included
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html
  #lifecycle-configuration-constraints, and the `Days` field of
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_Transition.html).
- Minimum storage duration: S3 Standard-IA and S3 One Zone-IA bill at least 30 days, S3 Glacier Instant
  Retrieval at least 90 days, and an object deleted earlier is billed for the rest of the minimum
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/storage-class-intro.html#sc-compare, table
  "Comparing the Amazon S3 storage classes", and #sc-infreq-data-access: "If you delete an object before
  the end of the 30-day minimum storage duration period, you are charged for 30 days").
- Small objects: since September 2024 a lifecycle configuration's default `TransitionDefaultMinimumObjectSize`
  is `all_storage_classes_128K`: "Objects smaller than 128 KB will not transition to any storage class by
  default" (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-s3-bucket-lifecycleconfig.html,
  https://docs.aws.amazon.com/cdk/api/v2/docs/aws-cdk-lib.aws_s3.TransitionDefaultMinimumObjectSize.html).
  These classes also bill at least 128 KB per object (the sc-compare table above), so the default is the
  one that saves money; the stack sets it explicitly.
- Instant reads: S3 Standard-IA, S3 One Zone-IA and S3 Glacier Instant Retrieval objects "are available for
  anytime access" with millisecond first-byte latency; S3 Glacier Flexible Retrieval and S3 Glacier Deep
  Archive objects must be restored first (RestoreObject, minutes to 48 hours) and GetObject answers
  `InvalidObjectState` until then (storage-class-intro.html#sc-glacier-restore,
  https://docs.aws.amazon.com/botocore/latest/reference/services/s3/client/exceptions/InvalidObjectState.html).
  A replay reads raw objects with GetObject, so archive classes would break it: they are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only; stack.config imports this module
    from stack.config import EnvironmentConfig

# S3 Lifecycle's default: no transition for objects smaller than this (all_storage_classes_128K).
TRANSITION_MIN_OBJECT_BYTES = 128 * 1024


@dataclass(frozen=True)
class StorageClassRules:
    name: str  # the S3 API / CloudFormation name
    title: str
    min_transition_days: int  # earliest lifecycle transition after creation S3 accepts
    min_storage_days: int  # billed at least this long once moved
    note: str


# The classes a raw object may move to: every one answers GetObject at once (no restore).
REPLAYABLE_CLASSES: dict[str, StorageClassRules] = {
    rules.name: rules
    for rules in (
        StorageClassRules(
            "STANDARD_IA",
            "S3 Standard-IA",
            30,
            30,
            "millisecond reads, a per-GB retrieval fee; stored in at least three Availability Zones",
        ),
        StorageClassRules(
            "ONEZONE_IA",
            "S3 One Zone-IA",
            30,
            30,
            "millisecond reads, a per-GB retrieval fee; one Availability Zone only: raw requests are the "
            "one copy of what producers sent, so only where losing an AZ's replay data is acceptable",
        ),
        StorageClassRules(
            "GLACIER_IR",
            "S3 Glacier Instant Retrieval",
            0,
            90,
            "millisecond reads, a higher per-GB retrieval fee; for data read about once a quarter",
        ),
    )
}

# Refused, with the reason the config error gives.
REFUSED_CLASSES: dict[str, str] = {
    "GLACIER": (
        "S3 Glacier Flexible Retrieval objects must be restored (RestoreObject, minutes to hours) before "
        "GetObject works (it answers InvalidObjectState), so a replay could not read them"
    ),
    "DEEP_ARCHIVE": (
        "S3 Glacier Deep Archive objects must be restored (RestoreObject, up to 48 hours) before GetObject "
        "works (it answers InvalidObjectState), so a replay could not read them"
    ),
    "INTELLIGENT_TIERING": (
        "S3 Intelligent-Tiering moves objects by access, not by age (and its optional archive tiers need a "
        "restore), so the replay window could not say where a request is; choose an age-based class"
    ),
    "STANDARD": "S3 Standard is where raw objects start; leave the transition out to keep them there",
}


def storage_class_problem(name: str) -> str | None:
    """Why `name` cannot be `retention.raw_storage_class`, or None when it can."""
    if name in REPLAYABLE_CLASSES:
        return None
    allowed = ", ".join(REPLAYABLE_CLASSES)
    reason = REFUSED_CLASSES.get(name)
    if reason is not None:
        return f"{reason}; use one of {allowed} (they answer GetObject at once)"
    return f"must be one of {allowed}: the S3 classes that answer GetObject at once (no restore)"


def lifecycle_problems(
    raw_objects_days: int,
    raw_transition_days: int | None,
    raw_storage_class: str | None,
    record_ttl_days: int,
) -> list[str]:
    """Every rule a raw-retention choice breaks, as messages naming the keys (empty: the choice is valid).
    `raw_storage_class` has passed `storage_class_problem` already (or is None)."""
    problems: list[str] = []
    if (raw_transition_days is None) != (raw_storage_class is None):
        problems.append(
            f"retention.raw_transition_days = {raw_transition_days!r} and retention.raw_storage_class = "
            f"{raw_storage_class!r}: they go together; set both to move raw requests to a cheaper class "
            "after that many days, or neither to keep them in S3 Standard until they expire"
        )
    elif raw_transition_days is not None and raw_storage_class in REPLAYABLE_CLASSES:
        rules = REPLAYABLE_CLASSES[raw_storage_class]
        if raw_transition_days < rules.min_transition_days:
            problems.append(
                f"retention.raw_transition_days is {raw_transition_days}, but S3 Lifecycle moves objects to "
                f"{rules.name} only after at least {rules.min_transition_days} days in S3 Standard "
                "(the deploy would fail); use at least "
                f"{rules.min_transition_days}"
            )
        kept = raw_objects_days - raw_transition_days
        if kept < rules.min_storage_days:
            problems.append(
                f"retention.raw_objects_days is {raw_objects_days} and retention.raw_transition_days is "
                f"{raw_transition_days}: raw requests would spend {kept} day(s) in {rules.name}, which bills "
                f"at least {rules.min_storage_days} days per object; raise raw_objects_days to at least "
                f"{raw_transition_days + rules.min_storage_days} (the same bill keeps them longer for "
                "replay), transition earlier, or leave the transition out"
            )
    if raw_objects_days > record_ttl_days:
        problems.append(
            f"retention.raw_objects_days ({raw_objects_days}) is longer than retention.record_ttl_days "
            f"({record_ttl_days}): a replay needs both the raw request and its batch item (the counters it "
            "keeps exact), so raw requests older than the record TTL could not be replayed and would only "
            "cost storage; lower raw_objects_days or raise record_ttl_days"
        )
    return problems


def transition_unreachable(max_body_bytes: int) -> str | None:
    """A transition no raw object can take: every raw object is one request body, at most
    `api.max_body_bytes`, and S3 Lifecycle leaves objects under 128 KB in S3 Standard by default."""
    if max_body_bytes >= TRANSITION_MIN_OBJECT_BYTES:
        return None
    return (
        f"retention.raw_transition_days is set, but api.max_body_bytes is {max_body_bytes}: every raw "
        f"object is one request body, and S3 Lifecycle does not transition objects smaller than "
        f"{TRANSITION_MIN_OBJECT_BYTES // 1024} KB (its default since September 2024), so no raw request "
        "would ever move; leave the transition out"
    )


# --- the replay window ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReplayWindow:
    """What `rtp replay` can reach in one environment."""

    env: str
    days: int  # requests received within this many days are kept (retention.raw_objects_days)
    record_ttl_days: int  # batch items live this long (>= days, enforced by the config)
    transition_days: int | None  # after this many days raw requests sit in `storage_class_after`
    storage_class_after: str | None

    def oldest_kept(self, now: datetime) -> datetime:
        """The oldest receive time whose raw request is still guaranteed to be there."""
        return _utc(now, "now") - timedelta(days=self.days)

    def describe(self) -> str:
        kept = f"raw requests are kept {self.days} day(s) (retention.raw_objects_days)"
        if self.storage_class_after is None or self.transition_days is None:
            return f"{self.env}: {kept}, in S3 Standard"
        title = REPLAYABLE_CLASSES[self.storage_class_after].title
        return (
            f"{self.env}: {kept}: {self.transition_days} day(s) in S3 Standard, then in {title} "
            f"({self.storage_class_after}) when at least {TRANSITION_MIN_OBJECT_BYTES // 1024} KB"
        )


def replay_window(config: EnvironmentConfig) -> ReplayWindow:
    """The replay window of an environment's (validated) configuration."""
    retention = config.retention
    return ReplayWindow(
        env=config.name,
        days=retention.raw_objects_days,
        record_ttl_days=retention.record_ttl_days,
        transition_days=retention.raw_transition_days,
        storage_class_after=retention.raw_storage_class,
    )


def window_check(window: ReplayWindow, since: datetime, now: datetime) -> str | None:
    """A message when a replay from `since` reaches past what is kept, else None. Times must carry a
    timezone (a naive one raises ValueError: guessing it could move the boundary by hours)."""
    since, now = _utc(since, "since"), _utc(now, "now")
    oldest = window.oldest_kept(now)
    if since >= oldest:
        return None
    back = now - since
    earliest = _ceil_second(oldest)
    return (
        f"--since {_show(since)} reaches {_span(back)} back, but {window.env} keeps raw requests "
        f"{window.days} day(s) (retention.raw_objects_days): requests received before {_show(earliest)} "
        "are expired or about to be (S3 Lifecycle deletes them) and cannot be replayed; "
        f"use --since {_show(earliest)} or later"
    )


def storage_note(window: ReplayWindow, since: datetime, now: datetime) -> str | None:
    """For a dry run: which part of the window sits in the colder class (reads there pay a retrieval fee
    per GB), or None when the whole window is in S3 Standard."""
    if window.storage_class_after is None or window.transition_days is None:
        return None
    since, now = _utc(since, "since"), _utc(now, "now")
    moved_before = now - timedelta(days=window.transition_days)
    if since >= moved_before:
        return None
    rules = REPLAYABLE_CLASSES[window.storage_class_after]
    return (
        f"requests received before {_show(moved_before)} are in {rules.title} "
        f"({rules.name}; objects of at least {TRANSITION_MIN_OBJECT_BYTES // 1024} KB): read at once, "
        "with a per-GB retrieval fee"
    )


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} = {moment.isoformat()} has no timezone; give one (for example Z for UTC)")
    return moment.astimezone(UTC)


def _show(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ceil_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def _span(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.1f} days" if days < 10 else f"{days:.0f} days"
