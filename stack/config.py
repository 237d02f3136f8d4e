"""Per-environment configuration: one YAML file per environment in `config/`, parsed into one typed,
validated object that `main.py`, the stack and the `rtp` CLI all share.

Every default lives here. Unknown keys are errors. A bad file raises `ConfigError`, whose message names
the file, the key, the bad value and what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stack.project import CONFIG_DIR
from stack.regions import POWERTOOLS_LAYER_REGIONS, unsupported_region_message
from stack.retention import lifecycle_problems, storage_class_problem, transition_unreachable

# Hard limits of the managed services, so a config cannot ask for something AWS would refuse at deploy.
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024  # request payload of a synchronous invoke
PROXY_EVENT_HEADROOM_BYTES = 256 * 1024  # headers and request context around the body
# The body travels inside the proxy event as a JSON string: every `"` and `\` in it is escaped, so a
# JSON body can take up to twice its size there. A larger limit would let valid requests fail in
# Lambda's invoke (API Gateway answers 5xx) instead of getting a clean 413.
MAX_BODY_BYTES_LIMIT = 3_000_000
assert 2 * MAX_BODY_BYTES_LIMIT + PROXY_EVENT_HEADROOM_BYTES <= LAMBDA_SYNC_PAYLOAD_BYTES
LAMBDA_MIN_UNRESERVED_CONCURRENCY = 100  # Lambda refuses reservations that leave fewer than this
SQS_MAX_VISIBILITY_TIMEOUT_SECONDS = 12 * 60 * 60
API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS = 29

TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")
NAME = re.compile(r"^[a-z][a-z0-9-]{1,20}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """A configuration file is missing or invalid. The message is meant for a human."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionConfig(_Strict):
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 256
    timeout_seconds: Annotated[int, Field(ge=1, le=900)] = 10
    # Reserved concurrency is a hard cap and carves capacity out of the account's pool: off unless asked.
    reserved_concurrency: Annotated[int, Field(ge=1)] | None = None


class IngestFunctionConfig(FunctionConfig):
    # Pre-warmed instances behind a `live` alias; costs money around the clock, so 0 unless asked.
    provisioned_concurrency: Annotated[int, Field(ge=0, le=1000)] = 0


class ProcessorFunctionConfig(FunctionConfig):
    memory_mb: Annotated[int, Field(ge=128, le=10240)] = 512
    timeout_seconds: Annotated[int, Field(ge=1, le=900)] = 60


class FunctionsConfig(_Strict):
    ingest: IngestFunctionConfig = IngestFunctionConfig()
    processor: ProcessorFunctionConfig = ProcessorFunctionConfig()
    query: FunctionConfig = FunctionConfig()


class ApiConfig(_Strict):
    stage_name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_]{1,64}$")] = "v1"
    throttle_rate_limit: Annotated[float, Field(gt=0, le=10000)] = 50
    throttle_burst_limit: Annotated[int, Field(ge=1, le=5000)] = 100
    max_records_per_request: Annotated[int, Field(ge=1, le=500)] = 500
    max_body_bytes: Annotated[int, Field(ge=1024, le=MAX_BODY_BYTES_LIMIT)] = MAX_BODY_BYTES_LIMIT
    waf: bool = False
    waf_rate_limit_per_5min: Annotated[int, Field(ge=10, le=2_000_000_000)] = 3000


class ProcessingConfig(_Strict):
    batch_size: Annotated[int, Field(ge=1, le=10000)] = 10
    max_batching_window_seconds: Annotated[int, Field(ge=0, le=300)] = 1
    max_concurrency: Annotated[int, Field(ge=2, le=1000)] = 5
    # Pollers for `rtp replay`'s queue, apart from live traffic's `max_concurrency`: a replay never takes
    # more processor instances than this. 2 is the least an SQS event source's MaximumConcurrency takes:
    # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html#events-sqs-max-concurrency
    replay_concurrency: Annotated[int, Field(ge=2, le=1000)] = 2
    max_receive_count: Annotated[int, Field(ge=1, le=1000)] = 3

    @model_validator(mode="after")
    def _batch_window(self) -> ProcessingConfig:
        if self.batch_size > 10 and self.max_batching_window_seconds < 1:
            raise ValueError(
                "batch_size above 10 needs max_batching_window_seconds of at least 1 "
                "(an SQS event source rule)"
            )
        return self


class RetentionConfig(_Strict):
    # Raw requests expire after raw_objects_days: that is the replay window. Optionally they move to a
    # cheaper class that still answers GetObject at once after raw_transition_days (stack/retention.py
    # has the S3 rules, with their sources).
    raw_objects_days: Annotated[int, Field(ge=1, le=3650)] = 7
    raw_transition_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    raw_storage_class: str | None = None
    log_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653] = 30
    record_ttl_days: Annotated[int, Field(ge=1, le=3650)] = 90

    @field_validator("raw_storage_class")
    @classmethod
    def _raw_storage_class(cls, name: str | None) -> str | None:
        problem = None if name is None else storage_class_problem(name)
        if problem is not None:
            raise ValueError(problem)
        return name

    @model_validator(mode="after")
    def _raw_lifecycle(self) -> RetentionConfig:
        problems = lifecycle_problems(
            self.raw_objects_days, self.raw_transition_days, self.raw_storage_class, self.record_ttl_days
        )
        if problems:
            raise ValueError("; and ".join(problems))
        return self


class AlarmsConfig(_Strict):
    email: str | None = None
    period_seconds: Literal[60, 300, 900, 3600] = 60
    evaluation_periods: Annotated[int, Field(ge=1, le=100)] = 3
    datapoints_to_alarm: Annotated[int, Field(ge=1, le=100)] = 2
    function_errors: Annotated[int, Field(ge=1)] = 1
    function_throttles: Annotated[int, Field(ge=1)] = 1
    duration_p99_ratio_of_timeout: Annotated[float, Field(gt=0, le=1)] = 0.8
    api_5xx_errors: Annotated[int, Field(ge=1)] = 1
    api_latency_p99_ms: Annotated[int, Field(ge=1, le=29000)] = 2000
    queue_oldest_message_age_seconds: Annotated[int, Field(ge=60)] = 300
    dynamodb_throttles: Annotated[int, Field(ge=1)] = 1

    @field_validator("email")
    @classmethod
    def _email(cls, email: str | None) -> str | None:
        if email is not None and not EMAIL.match(email):
            raise ValueError("must be one e-mail address, like oncall@example.com (or leave it out)")
        return email

    @model_validator(mode="after")
    def _datapoints(self) -> AlarmsConfig:
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError("datapoints_to_alarm cannot exceed evaluation_periods")
        return self


class EnvironmentConfig(_Strict):
    """One environment, as read from `config/<name>.yaml`."""

    name: str
    project: Annotated[str, Field(pattern=NAME.pattern)] = "rtp"
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")] | None = None
    # The Lambda concurrency quota of the target account; new accounts start at 10, raised on request.
    account_concurrency_limit: Annotated[int, Field(ge=10)] = 1000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tags: dict[str, str] = {}
    api: ApiConfig = ApiConfig()
    functions: FunctionsConfig = FunctionsConfig()
    processing: ProcessingConfig = ProcessingConfig()
    retention: RetentionConfig = RetentionConfig()
    alarms: AlarmsConfig = AlarmsConfig()

    @field_validator("region")
    @classmethod
    def _region(cls, region: str | None) -> str | None:
        if region is not None and region not in POWERTOOLS_LAYER_REGIONS:
            raise ValueError(unsupported_region_message(region))
        return region

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not TAG_KEY.match(key) or key.lower().startswith("aws:"):
                raise ValueError(
                    f"tag key {key!r} must be 1-128 characters of letters, digits, spaces "
                    "and _.:/=+-@, not aws:"
                )
            if len(value) > 256:
                raise ValueError(f"tag {key!r} value is longer than 256 characters")
        reserved = {"Environment", "Project"} & set(tags)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are set from `name` and `project`; remove them from tags")
        return tags

    @model_validator(mode="after")
    def _cross_field(self) -> EnvironmentConfig:
        if (self.account is None) != (self.region is None):
            raise ValueError(
                f"account = {self.account!r} and region = {self.region!r}: they go together; "
                "set both to pin the stack to one account and region, or neither"
            )
        reserved = {
            fn: cfg.reserved_concurrency
            for fn, cfg in (
                ("ingest", self.functions.ingest),
                ("processor", self.functions.processor),
                ("query", self.functions.query),
            )
            if cfg.reserved_concurrency is not None
        }
        grantable = self.account_concurrency_limit - LAMBDA_MIN_UNRESERVED_CONCURRENCY
        if reserved and sum(reserved.values()) > grantable:
            raise ValueError(
                f"functions.*.reserved_concurrency adds up to {sum(reserved.values())} ({reserved}), "
                f"but an account with account_concurrency_limit {self.account_concurrency_limit} "
                f"can reserve at most {max(grantable, 0)} "
                f"(Lambda keeps {LAMBDA_MIN_UNRESERVED_CONCURRENCY} unreserved)"
            )
        processor = self.functions.processor
        if (
            processor.reserved_concurrency is not None
            and processor.reserved_concurrency
            < self.processing.max_concurrency + self.processing.replay_concurrency
        ):
            raise ValueError(
                f"functions.processor.reserved_concurrency ({processor.reserved_concurrency}) is below "
                "processing.max_concurrency + processing.replay_concurrency "
                f"({self.processing.max_concurrency} + {self.processing.replay_concurrency}): "
                "live traffic would be throttled during a replay"
            )
        ingest = self.functions.ingest
        if (
            ingest.reserved_concurrency is not None
            and ingest.provisioned_concurrency > ingest.reserved_concurrency
        ):
            raise ValueError(
                "functions.ingest.provisioned_concurrency cannot exceed its reserved_concurrency"
            )
        for fn in ("ingest", "query"):
            timeout = getattr(self.functions, fn).timeout_seconds
            if timeout > API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS:
                raise ValueError(
                    f"functions.{fn}.timeout_seconds is {timeout}, but API Gateway stops waiting after "
                    f"{API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS}s; "
                    f"use at most {API_GATEWAY_INTEGRATION_TIMEOUT_SECONDS}"
                )
        if self.queue_visibility_timeout_seconds > SQS_MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise ValueError(
                "functions.processor.timeout_seconds is too long for the SQS visibility timeout limit"
            )
        return self

    @model_validator(mode="after")
    def _raw_transition_reachable(self) -> EnvironmentConfig:
        if self.retention.raw_transition_days is not None:
            problem = transition_unreachable(self.api.max_body_bytes)
            if problem is not None:
                raise ValueError(problem)
        return self

    # Derived values, computed in one place so the stack and the CLI agree.
    @property
    def stack_name(self) -> str:
        return f"{self.project}-{self.name}"

    @property
    def all_tags(self) -> dict[str, str]:
        return {"Project": self.project, "Environment": self.name, **self.tags}

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        # AWS guidance for SQS event sources: at least 6x the function timeout plus the batching window.
        return 6 * self.functions.processor.timeout_seconds + self.processing.max_batching_window_seconds


def available_environments(config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(path.stem for path in config_dir.glob("*.yaml"))


def load_config(name: str, config_dir: Path = CONFIG_DIR) -> EnvironmentConfig:
    """Read and validate `config/<name>.yaml`; raise ConfigError with a message a person can act on."""
    if not NAME.match(name):
        raise ConfigError(f"environment name {name!r} must match {NAME.pattern} (lower case, digits, dashes)")
    path = config_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_environments(config_dir)) or "none"
        raise ConfigError(f"{path}: no such environment file (known environments: {known})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(raw).__name__}")
    if raw.get("name", name) != name:
        raise ConfigError(
            f"{path}: name = {raw['name']!r}, but the file is named for {name!r}; make them match"
        )
    try:
        return EnvironmentConfig.model_validate({**raw, "name": name})
    except ValidationError as exc:
        raise ConfigError(_describe(path, raw, exc)) from exc


def _describe(path: Path, raw: dict[str, Any], exc: ValidationError) -> str:
    lines = [f"{path}: {exc.error_count()} invalid setting(s)"]
    for error in exc.errors():
        loc = error["loc"]
        location = ".".join(str(part) for part in loc)
        value = _lookup(raw, loc)
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(loc[:-1])) or "none"
            lines.append(
                f"  {location} = {value!r}: unknown key; allowed here: {allowed} "
                "(see README 'Configuration reference')"
            )
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error" and (value is _MISSING or isinstance(value, dict)):
            # A rule across several keys: the message names them and their values.
            lines.append(f"  {location}: {message}" if location else f"  {message}")
            continue
        shown = f" = {value!r}" if value is not _MISSING else ""
        lines.append(f"  {location}{shown}: {message}")
    return "\n".join(lines)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys a section of the file accepts (the fields of the model at `loc`)."""
    model: Any = EnvironmentConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None or not (
            isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        ):
            return []
        model = field.annotation
    return list(model.model_fields)


_MISSING = object()


def _lookup(raw: Any, loc: tuple[int | str, ...]) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            continue
        return _MISSING
    return node
