"""What an environment costs a month: its synthesized template and configuration, the per-record model
measured by `make bench` (bench/cost.py -> rtp_cli/data/cost_model.json) and one price table
(rtp_cli/pricing.py). `rtp cost` is a thin command over `estimate()`; bench/cost.py uses
`per_record_costs()` for its $ per million records, so both say the same thing.

Every figure is a list-price estimate: no free tier, first price tier, a 730-hour month, full event source
mapping batches at volume. What depends on traffic comes from the measured model (calls, request units,
bytes, handler time per record); what does not comes from the template (keys, alarms, dashboards, web
ACL, provisioned concurrency, retention, lifecycle, batch size). A price that could not be sourced is
shown as such and left out of the total, never guessed.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rtp_cli.pricing import PRICES, PRICES_DATE, REGION, Price
from stack.retention import REPLAYABLE_CLASSES, TRANSITION_MIN_OBJECT_BYTES

MODEL_VERSION = 1
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1024**3

# Assumptions that are ours, not AWS facts (each is named where it is used).
PLATFORM_LOG_BYTES = 350  # START/END/REPORT lines Lambda writes per invocation (estimate)
LONG_POLL_SECONDS = 20  # SQS's longest long-poll wait: one idle ReceiveMessage per poller per 20 s
# Lambda scales an SQS mapping back to five concurrent batches when traffic is low, and can go to two
# only without a maximum-concurrency setting:
# https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html
IDLE_POLLERS_WITH_MAX_CONCURRENCY = 5
IDLE_POLLERS = 2
# X-Ray's default sampling rule records the first request each second and 5 % of the rest:
# https://docs.aws.amazon.com/xray/latest/devguide/xray-console-sampling.html (and
# https://tsypuk.github.io/posts/2023/03/27/xra-tracing-3.html)
XRAY_RESERVOIR_PER_SECOND = 1.0
XRAY_FIXED_RATE = 0.05
# SQS reuses a queue's data key for KmsDataKeyReusePeriodSeconds before calling KMS again:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html
SQS_KMS_CALLERS = 2  # the producer (GenerateDataKey) and the consumer (Decrypt)
# Typical lengths of API Gateway access-log variables, to size one access-log line (estimate).
_ACCESS_LOG_VALUE_BYTES = {
    "requestId": 36,
    "extendedRequestId": 16,
    "identity.sourceIp": 13,
    "identity.caller": 21,
    "identity.userArn": 45,
    "requestTime": 26,
    "httpMethod": 4,
    "resourcePath": 8,
    "status": 3,
    "protocol": 8,
    "responseLength": 3,
    "responseLatency": 3,
    "integrationLatency": 3,
    "xrayTraceId": 40,
}
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "data" / "cost_model.json"
# The raw bucket's transition target -> (storage price, lifecycle transition price) in rtp_cli/pricing.py.
RAW_CLASS_PRICES = {
    "STANDARD_IA": ("s3.standard_ia.storage_gb_month", "s3.standard_ia.transition_request"),
    "ONEZONE_IA": ("s3.onezone_ia.storage_gb_month", "s3.onezone_ia.transition_request"),
    "GLACIER_IR": ("s3.glacier_ir.storage_gb_month", "s3.glacier_ir.transition_request"),
}


class CostError(ValueError):
    """Bad input or a missing/invalid model: the message is for a person."""


# --- the measured model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PerRecord:
    """Traffic-dependent quantities per record, at one records-per-request and record size."""

    records_per_request: float
    record_bytes: int
    write_units: float
    read_units: float
    units_by: dict[str, float]  # "REC table", "REC index by-type-status", ...
    ingest_seconds_per_request: float
    processor_seconds_per_message: float
    messages: float  # SQS messages (claim checks) per record
    sqs_billed_requests: float  # by the functions (send...), per record; the mapping's are separate
    esm_calls_per_invocation: float  # the event source mapping's ReceiveMessage + DeleteMessageBatch
    s3_puts: float
    s3_gets: float
    s3_bytes: float
    log_bytes: dict[str, float]  # by function
    table_bytes: dict[str, float]  # stored bytes (items and index entries, with overhead) by item kind
    table_ttl_days: dict[str, float | None]  # how long each kind is kept (None: no TTL)
    ttl_follows_config: dict[str, bool]  # kinds kept for `retention.record_ttl_days`
    custom_metrics: int


@dataclass
class Model:
    document: dict[str, Any]

    @classmethod
    def load(cls, path: Path | None = None) -> Model:
        try:
            if path is None:
                text = resources.files("rtp_cli").joinpath("data/cost_model.json").read_text("utf-8")
            else:
                text = path.read_text("utf-8")
            document = json.loads(text)
        except (OSError, ValueError) as error:
            raise CostError(
                f"cannot read the cost model ({path or 'rtp_cli/data/cost_model.json'}): {error}; "
                "regenerate it with `python -m bench cost`"
            ) from error
        if not isinstance(document, dict) or document.get("version") != MODEL_VERSION:
            raise CostError(
                f"the cost model is not version {MODEL_VERSION}: regenerate it with `python -m bench cost`"
            )
        return cls(document)

    @property
    def scenarios(self) -> list[dict[str, Any]]:
        return sorted(self.document["scenarios"], key=lambda s: s["records_per_request"])

    @property
    def record_bytes(self) -> int:
        return int(self.document["record_bytes"])

    def scenario_per_record(self, scenario: Mapping[str, Any], record_bytes: int | None = None) -> PerRecord:
        return _per_record(scenario, self.document, record_bytes or self.record_bytes)

    def per_record(self, records_per_request: float, record_bytes: int | None = None) -> PerRecord:
        """Interpolated linearly in 1/B between the two measured batch sizes around B (clamped)."""
        size = record_bytes or self.record_bytes
        measured = [self.scenario_per_record(s, size) for s in self.scenarios]
        if not measured:
            raise CostError("the cost model holds no measurements")
        b = float(records_per_request)
        if b <= measured[0].records_per_request:
            return _replace_b(measured[0], b)
        if b >= measured[-1].records_per_request:
            return _replace_b(measured[-1], b)
        for low, high in itertools.pairwise(measured):
            if low.records_per_request <= b <= high.records_per_request:
                span = 1 / low.records_per_request - 1 / high.records_per_request
                weight = (1 / low.records_per_request - 1 / b) / span
                return _interpolate(low, high, weight, b)
        raise AssertionError("unreachable")


def _per_record(scenario: Mapping[str, Any], document: Mapping[str, Any], record_bytes: int) -> PerRecord:
    records = scenario["records"]
    requests = scenario["requests"]
    messages = scenario["messages"]
    measured_bytes = int(document["record_bytes"])
    slopes: Mapping[str, float] = document.get("slopes", {})  # extra bytes per extra record byte
    extra = record_bytes - measured_bytes

    def rescaled(units: float, mean_bytes: float, slope: float, unit_bytes: int) -> float:
        if extra == 0 or units == 0:
            return units
        before = max(1, math.ceil(mean_bytes / unit_bytes))
        after = max(1, math.ceil(max(0.0, mean_bytes + slope * extra) / unit_bytes))
        return units * after / before

    units_by: dict[str, float] = {}
    write_units = read_units = 0.0
    for group in scenario["dynamodb"]["by"]:
        if group["actor"] not in ("ingest", "processor"):
            continue
        label = f"{group['kind']} {group['purpose']}"
        mean = group["bytes"] / max(1, group["count"])
        unit_bytes = 4096 if group["purpose"] == "read" else 1024
        units = rescaled(group["units"], mean, slopes.get(f"ddb {label}", 0.0), unit_bytes) / records
        units_by[label] = units_by.get(label, 0.0) + units
        if group["purpose"] == "read":
            read_units += units
        else:
            write_units += units

    calls = scenario["calls"]
    sqs_billed = sum(scenario["sqs_billed_requests"].get(actor, 0) for actor in ("ingest", "processor"))
    esm_calls = scenario["sqs_billed_requests"].get("esm", 0)
    invocations = max(1, scenario["durations"]["processor"]["invocations"])

    def count(actor: str, operations: Iterable[str]) -> int:
        return sum(calls.get(actor, {}).get(op, 0) for op in operations)

    s3_puts = count("ingest", ("s3.PutObject",)) + count("processor", ("s3.PutObject",))
    s3_gets = count("ingest", ("s3.GetObject", "s3.HeadObject")) + count(
        "processor", ("s3.GetObject", "s3.HeadObject")
    )
    table_bytes = {
        kind: (info["bytes"] + slopes.get(f"table {kind}", 0.0) * extra * records) / records
        for kind, info in scenario["table"].items()
    }
    log_bytes = {
        actor: (scenario["log_bytes"].get(actor, 0) + slopes.get(f"logs {actor}", 0.0) * extra * records)
        / records
        for actor in ("ingest", "processor")
    }
    durations = scenario["durations"]
    ingest_seconds = durations["ingest"]["seconds"] / max(1, durations["ingest"]["invocations"])
    processor_seconds = durations["processor"]["seconds"] / max(1, messages)
    ingest_seconds += slopes.get("seconds ingest", 0.0) * extra * records / max(1, requests)
    processor_seconds += slopes.get("seconds processor", 0.0) * extra * records / max(1, messages)
    return PerRecord(
        records_per_request=scenario["records_per_request"],
        record_bytes=record_bytes,
        write_units=write_units,
        read_units=read_units,
        units_by=units_by,
        ingest_seconds_per_request=max(0.0, ingest_seconds),
        processor_seconds_per_message=max(0.0, processor_seconds),
        messages=messages / records,
        sqs_billed_requests=sqs_billed / records,
        esm_calls_per_invocation=esm_calls / invocations,
        s3_puts=s3_puts / records,
        s3_gets=s3_gets / records,
        s3_bytes=(scenario["s3_bytes"] + slopes.get("s3", 0.0) * extra * records) / records,
        log_bytes=log_bytes,
        table_bytes=table_bytes,
        table_ttl_days={kind: info["ttl_days"] for kind, info in scenario["table"].items()},
        ttl_follows_config={
            kind: bool(info["ttl_follows_config"]) for kind, info in scenario["table"].items()
        },
        custom_metrics=len(scenario.get("metrics", [])),
    )


def _replace_b(per: PerRecord, b: float) -> PerRecord:
    """Outside the measured range: per-request overheads follow 1/B from the nearest measurement."""
    return _interpolate(per, per, 0.0, b)


def _interpolate(low: PerRecord, high: PerRecord, weight: float, b: float) -> PerRecord:
    def mix(a: float, c: float) -> float:
        return a + (c - a) * weight

    def mix_map(a: Mapping[str, float], c: Mapping[str, float]) -> dict[str, float]:
        return {k: mix(a.get(k, 0.0), c.get(k, 0.0)) for k in sorted(set(a) | set(c))}

    scale = low.records_per_request / b if weight == 0.0 and low is high else None

    def per_request(value_low: float, value_high: float) -> float:
        # Quantities incurred once per request scale with 1/B outside the measured range.
        return value_low * scale if scale is not None else mix(value_low, value_high)

    return PerRecord(
        records_per_request=b,
        record_bytes=low.record_bytes,
        write_units=mix(low.write_units, high.write_units),
        read_units=mix(low.read_units, high.read_units),
        units_by=mix_map(low.units_by, high.units_by),
        ingest_seconds_per_request=mix(low.ingest_seconds_per_request, high.ingest_seconds_per_request),
        processor_seconds_per_message=mix(
            low.processor_seconds_per_message, high.processor_seconds_per_message
        ),
        messages=per_request(low.messages, high.messages),
        sqs_billed_requests=per_request(low.sqs_billed_requests, high.sqs_billed_requests),
        esm_calls_per_invocation=mix(low.esm_calls_per_invocation, high.esm_calls_per_invocation),
        s3_puts=per_request(low.s3_puts, high.s3_puts),
        s3_gets=per_request(low.s3_gets, high.s3_gets),
        s3_bytes=mix(low.s3_bytes, high.s3_bytes),
        log_bytes=mix_map(low.log_bytes, high.log_bytes),
        table_bytes=mix_map(low.table_bytes, high.table_bytes),
        table_ttl_days={**low.table_ttl_days, **high.table_ttl_days},
        ttl_follows_config={**low.ttl_follows_config, **high.ttl_follows_config},
        custom_metrics=max(low.custom_metrics, high.custom_metrics),
    )


# --- what the template says --------------------------------------------------------------------------
@dataclass
class FunctionFacts:
    logical_id: str
    service: str  # POWERTOOLS_SERVICE_NAME (ingest, processor, query)
    memory_mb: int
    architecture: str
    tracing: bool
    log_retention_days: int | None
    provisioned_concurrency: int = 0


@dataclass
class TemplateFacts:
    functions: dict[str, FunctionFacts]
    batch_size: int
    max_concurrency: int | None
    api_tracing: bool
    access_log_bytes: int  # one access-log line, estimated from the stage's format
    access_log_retention_days: int | None
    alarm_metrics: int
    dashboards: int
    kms_keys: int
    web_acls: int
    waf_rules: int
    pitr: bool
    raw_expiration_days: int | None
    sqs_kms_reuse_seconds: int | None
    record_ttl_days: int | None
    notes: list[str] = field(default_factory=list)
    # The raw rule's transition (retention.raw_transition_days / raw_storage_class), if any.
    raw_transition_days: int | None = None
    raw_storage_class: str | None = None

    @property
    def traced(self) -> bool:
        return self.api_tracing or any(f.tracing for f in self.functions.values())

    @classmethod
    def from_template(cls, template: Mapping[str, Any]) -> TemplateFacts:
        resources_ = template.get("Resources", {})

        def of_type(kind: str) -> dict[str, dict[str, Any]]:
            return {lid: r for lid, r in resources_.items() if r.get("Type") == kind}

        def props(resource: Mapping[str, Any]) -> dict[str, Any]:
            value: dict[str, Any] = resource.get("Properties", {})
            return value

        def ref(value: Any) -> str | None:
            if isinstance(value, dict):
                if "Ref" in value:
                    return str(value["Ref"])
                if "Fn::GetAtt" in value:
                    return str(value["Fn::GetAtt"][0])
            return None

        retention = {
            lid: props(r).get("RetentionInDays") for lid, r in of_type("AWS::Logs::LogGroup").items()
        }
        functions: dict[str, FunctionFacts] = {}
        for lid, resource in of_type("AWS::Lambda::Function").items():
            p = props(resource)
            variables = p.get("Environment", {}).get("Variables", {})
            service = variables.get("POWERTOOLS_SERVICE_NAME")
            if not service:
                continue  # CDK's helper functions (bucket auto-delete) run only at deploy/delete time
            group = ref(p.get("LoggingConfig", {}).get("LogGroup"))
            functions[service] = FunctionFacts(
                logical_id=lid,
                service=service,
                memory_mb=int(p.get("MemorySize", 128)),
                architecture=(p.get("Architectures") or ["x86_64"])[0],
                tracing=p.get("TracingConfig", {}).get("Mode") == "Active",
                log_retention_days=retention.get(group) if group else None,
            )
        by_logical_id = {f.logical_id: f for f in functions.values()}
        for resource in of_type("AWS::Lambda::Alias").values():
            p = props(resource)
            target = by_logical_id.get(ref(p.get("FunctionName")) or "")
            config = p.get("ProvisionedConcurrencyConfig") or {}
            if target is not None:
                target.provisioned_concurrency += int(config.get("ProvisionedConcurrentExecutions", 0))

        mappings = [props(r) for r in of_type("AWS::Lambda::EventSourceMapping").values()]
        mapping = mappings[0] if mappings else {}
        stages = [props(r) for r in of_type("AWS::ApiGateway::Stage").values()]
        stage = stages[0] if stages else {}
        access = stage.get("AccessLogSetting", {})
        alarm_metrics = 0
        for resource in of_type("AWS::CloudWatch::Alarm").values():
            metrics = props(resource).get("Metrics")
            # Metric-math alarms are billed per metric they read (CloudWatch pricing: "per alarm metric").
            alarm_metrics += sum(1 for m in metrics if "MetricStat" in m) if metrics else 1
        acls = of_type("AWS::WAFv2::WebACL")
        buckets = of_type("AWS::S3::Bucket")
        raw_days = None
        raw_transition: dict[str, Any] = {}
        for resource in buckets.values():
            for rule in props(resource).get("LifecycleConfiguration", {}).get("Rules", []):
                if rule.get("Prefix", "").startswith("raw") and "ExpirationInDays" in rule:
                    raw_days = int(rule["ExpirationInDays"])
                    raw_transition = (rule.get("Transitions") or [{}])[0]
        tables = [props(r) for r in of_type("AWS::DynamoDB::Table").values()]
        reuse = [
            int(props(r)["KmsDataKeyReusePeriodSeconds"])
            for r in of_type("AWS::SQS::Queue").values()
            if "RedrivePolicy" in props(r) and "KmsMasterKeyId" in props(r)
        ]
        ttl_values = [
            int(f_props.get("Environment", {}).get("Variables", {})["RECORD_TTL_DAYS"])
            for f_props in (props(r) for r in of_type("AWS::Lambda::Function").values())
            if "RECORD_TTL_DAYS" in f_props.get("Environment", {}).get("Variables", {})
        ]
        return cls(
            functions=functions,
            batch_size=int(mapping.get("BatchSize", 10)),
            max_concurrency=mapping.get("ScalingConfig", {}).get("MaximumConcurrency"),
            api_tracing=bool(stage.get("TracingEnabled")),
            access_log_bytes=_access_log_bytes(access.get("Format", "")) if access else 0,
            access_log_retention_days=retention.get(ref(access.get("DestinationArn")) or ""),
            alarm_metrics=alarm_metrics,
            dashboards=len(of_type("AWS::CloudWatch::Dashboard")),
            kms_keys=len(of_type("AWS::KMS::Key")),
            web_acls=len(acls),
            waf_rules=sum(len(props(r).get("Rules", [])) for r in acls.values()),
            pitr=any(
                t.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
                for t in tables
            ),
            raw_expiration_days=raw_days,
            sqs_kms_reuse_seconds=reuse[0] if reuse else None,
            record_ttl_days=ttl_values[0] if ttl_values else None,
            raw_transition_days=(
                int(raw_transition["TransitionInDays"]) if "TransitionInDays" in raw_transition else None
            ),
            raw_storage_class=raw_transition.get("StorageClass"),
        )


def _access_log_bytes(log_format: str) -> int:
    pattern = re.compile(r"\$context\.([A-Za-z0-9_.]*[A-Za-z0-9_])")
    fixed = len(pattern.sub("", log_format).encode())
    return fixed + sum(_ACCESS_LOG_VALUE_BYTES.get(name, 1) for name in pattern.findall(log_format)) + 1


# --- the estimate -------------------------------------------------------------------------------------
@dataclass
class LineItem:
    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float | None
    monthly_usd: float | None  # None: no sourced price (see note); not in the total
    per_record: bool  # grows with traffic (vs. a fixed monthly charge)
    note: str = ""


@dataclass
class Estimate:
    env: str
    records_per_day: float
    records_per_request: float
    record_bytes: int
    items: list[LineItem]
    notes: list[str]
    model: dict[str, Any]

    @property
    def total(self) -> float:
        return sum(i.monthly_usd for i in self.items if i.monthly_usd is not None)

    @property
    def unpriced(self) -> list[LineItem]:
        return [i for i in self.items if i.monthly_usd is None and i.quantity > 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "region": REGION,
            "prices_date": PRICES_DATE,
            "records_per_day": self.records_per_day,
            "records_per_month": self.records_per_day * DAYS_PER_MONTH,
            "records_per_request": self.records_per_request,
            "record_bytes": self.record_bytes,
            "total_monthly_usd": round(self.total, 2),
            "items": [asdict(i) for i in self.items],
            "notes": self.notes,
            "model": self.model,
        }


def _item(
    service: str,
    item: str,
    quantity: float,
    key: str,
    per_record: bool,
    note: str = "",
    unit: str | None = None,
) -> LineItem:
    p: Price = PRICES[key]
    monthly = None if p.usd is None else quantity * p.usd
    text = note if p.known else f"{note}; price not found: {p.note}".strip("; ")
    return LineItem(service, item, quantity, unit or p.unit, p.usd, monthly, per_record, text)


def check_inputs(
    records_per_day: float, records_per_request: float, record_bytes: int, max_per_request: int
) -> None:
    if not math.isfinite(records_per_day) or records_per_day < 0:
        raise CostError(f"--records-per-day must be a number of records, 0 or more (got {records_per_day})")
    if not math.isfinite(records_per_request) or records_per_request < 1:
        raise CostError(f"--records-per-request must be at least 1 (got {records_per_request})")
    if records_per_request > max_per_request:
        raise CostError(
            f"--records-per-request {records_per_request:g} is more than this environment accepts "
            f"(api.max_records_per_request = {max_per_request})"
        )
    if record_bytes < 1 or record_bytes > 400 * 1024:
        raise CostError(
            f"--record-bytes must be between 1 and {400 * 1024} (a DynamoDB item's limit), got {record_bytes}"
        )


def estimate(
    env: str,
    template: Mapping[str, Any],
    config: Any,
    model: Model,
    records_per_day: float,
    records_per_request: float | None = None,
    record_bytes: int | None = None,
) -> Estimate:
    """A month of `env` at `records_per_day`; `config` is the environment's `EnvironmentConfig`."""
    max_per_request = int(config.api.max_records_per_request)
    b = float(records_per_request if records_per_request is not None else max_per_request)
    size = int(record_bytes if record_bytes is not None else model.record_bytes)
    check_inputs(records_per_day, b, size, max_per_request)
    facts = TemplateFacts.from_template(template)
    per = model.per_record(b, size)
    records = records_per_day * DAYS_PER_MONTH
    items = per_record_items(facts, per, records, config)
    items.extend(fixed_items(facts, config, per, records))
    notes = [
        f"us-east-1 list prices of {PRICES_DATE} (rtp_cli/pricing.py): no free tier, first price tier, "
        f"{HOURS_PER_MONTH}-hour month.",
        f"Per-record figures measured by `make bench` at {model.document['measured_at']} "
        f"(commit {model.document['commit']}) for {model.record_bytes}-byte records, interpolated to "
        f"{b:g} records per request"
        + (f" and rescaled to {size}-byte records." if size != model.record_bytes else "."),
        f"Processor invocations assume full batches of {facts.batch_size} messages (low traffic means "
        "smaller batches and more invocations).",
        "Lambda duration is the handler's time measured in-process against moto (no network), an "
        "approximation of billed duration.",
        "Not modelled: data transfer out, DynamoDB reads by API readers (GET routes), KMS requests made by "
        "DynamoDB and S3 (table keys are cached, the bucket uses an S3 Bucket Key), S3 server access logs.",
    ]
    notes.extend(facts.notes)
    if any(i.monthly_usd is None and i.quantity > 0 for i in items):
        notes.append("Items without a sourced price are listed but not in the total.")
    summary = {
        "measured_at": model.document["measured_at"],
        "commit": model.document["commit"],
        "write_units_per_record": per.write_units,
        "read_units_per_record": per.read_units,
    }
    return Estimate(env, records_per_day, b, size, items, notes, summary)


def per_record_items(
    facts: TemplateFacts, per: PerRecord, records: float, config: Any, marginal: bool = False
) -> list[LineItem]:
    """Everything that grows with traffic, for `records` records in a month; `marginal`: what one more
    million costs at volume (X-Ray's once-a-second reservoir is then already used up)."""
    requests = records / per.records_per_request
    messages = records * per.messages
    invocations = messages / max(1, facts.batch_size)
    items: list[LineItem] = [
        _item("API Gateway", "REST API requests", requests, "apigateway.rest_request", True),
        _item("Lambda", "ingest + processor invocations", requests + invocations, "lambda.request", True),
    ]
    for service, seconds in (
        ("ingest", requests * per.ingest_seconds_per_request),
        ("processor", messages * per.processor_seconds_per_message),
    ):
        function = facts.functions.get(service)
        if function is None:
            continue
        key = "lambda.gb_second_arm64" if function.architecture == "arm64" else "lambda.gb_second_x86_64"
        gb_seconds = seconds * function.memory_mb / 1024
        if key in PRICES:
            items.append(
                _item("Lambda", f"{service} duration ({function.memory_mb} MB)", gb_seconds, key, True)
            )
        else:
            items.append(
                LineItem(
                    "Lambda",
                    f"{service} duration",
                    gb_seconds,
                    "GB-second",
                    None,
                    None,
                    True,
                    f"no price for {key}",
                )
            )
    items += [
        _item(
            "DynamoDB", "write request units", records * per.write_units, "dynamodb.write_request_unit", True
        ),
        _item("DynamoDB", "read request units", records * per.read_units, "dynamodb.read_request_unit", True),
        _item("S3", "PUT requests (raw bodies)", records * per.s3_puts, "s3.put_request", True),
        _item("S3", "GET requests (processor)", records * per.s3_gets, "s3.get_request", True),
        _item(
            "SQS",
            "requests (send, mapping receive + delete)",
            records * per.sqs_billed_requests + invocations * per.esm_calls_per_invocation,
            "sqs.request",
            True,
            "one per 64 KB chunk",
        ),
    ]
    log_bytes = (
        records * sum(per.log_bytes.values())
        + (requests + invocations) * PLATFORM_LOG_BYTES
        + requests * facts.access_log_bytes
    )
    items.append(
        _item(
            "CloudWatch Logs",
            "ingestion (function logs, EMF metrics, access log)",
            log_bytes / GB,
            "logs.ingest_gb",
            True,
            f"measured function output + {PLATFORM_LOG_BYTES} B platform lines per invocation (estimate) "
            f"+ {facts.access_log_bytes} B per access-log line (estimated from the stage's format)",
        )
    )
    if facts.traced:
        # The default rule's fixed 5 % grows with traffic; its one-a-second reservoir is a fixed charge.
        reservoir = 0.0 if marginal else XRAY_RESERVOIR_PER_SECOND * SECONDS_PER_MONTH
        sampled = XRAY_FIXED_RATE * max(0.0, requests - reservoir)
        items.append(
            _item(
                "X-Ray",
                "traces recorded (5 % of requests)",
                sampled,
                "xray.trace_recorded",
                True,
                "default sampling rule",
            )
        )
    if facts.web_acls:
        items.append(_item("WAF", "requests inspected", requests, "waf.request", True))
    return items


def fixed_items(facts: TemplateFacts, config: Any, per: PerRecord, records: float) -> list[LineItem]:
    """Monthly charges that exist whatever the traffic (and storage, which follows retention)."""
    records_per_day = records / DAYS_PER_MONTH
    items: list[LineItem] = []
    for function in facts.functions.values():
        if function.provisioned_concurrency:
            gb_seconds = function.provisioned_concurrency * function.memory_mb / 1024 * SECONDS_PER_MONTH
            items.append(
                _item(
                    "Lambda",
                    f"{function.service} provisioned concurrency ({function.provisioned_concurrency} x "
                    f"{function.memory_mb} MB)",
                    gb_seconds,
                    "lambda.provisioned_gb_second_arm64",
                    False,
                )
            )
    ttl_days = int(config.retention.record_ttl_days)
    table_gb = 0.0
    for kind, bytes_per_record in per.table_bytes.items():
        kept = per.table_ttl_days.get(kind)
        days = ttl_days if per.ttl_follows_config.get(kind) else kept
        if days is None:
            days = DAYS_PER_MONTH  # no TTL: grows for ever; one month's worth shown
        table_gb += records_per_day * days * bytes_per_record / GB
    items.append(
        _item(
            "DynamoDB",
            f"storage at steady state (records kept {ttl_days} days by TTL)",
            table_gb,
            "dynamodb.storage_gb_month",
            True,
            "items and index entries, 100 B overhead each; TTL deletes cost no write units",
        )
    )
    if facts.pitr:
        items.append(_item("DynamoDB", "point-in-time recovery", table_gb, "dynamodb.pitr_gb_month", True))
    items.extend(raw_storage_items(facts, config, per, records))
    retention_days = [f.log_retention_days for f in facts.functions.values() if f.log_retention_days]
    keep = max(retention_days) if retention_days else int(config.retention.log_days)
    requests = records / per.records_per_request
    invocations = records * per.messages / max(1, facts.batch_size)
    ingest_log_gb_per_day = (
        (
            records * sum(per.log_bytes.values())
            + (requests + invocations) * PLATFORM_LOG_BYTES
            + requests * facts.access_log_bytes
        )
        / GB
        / DAYS_PER_MONTH
    )
    items.append(
        _item(
            "CloudWatch Logs",
            f"log storage ({keep}-day retention)",
            ingest_log_gb_per_day * keep,
            "logs.storage_gb_month",
            True,
            "uncompressed size: an upper bound",
        )
    )
    pollers = IDLE_POLLERS_WITH_MAX_CONCURRENCY if facts.max_concurrency else IDLE_POLLERS
    items.append(
        _item(
            "SQS",
            f"idle long polls by the event source mapping ({pollers} pollers)",
            pollers * SECONDS_PER_MONTH / LONG_POLL_SECONDS,
            "sqs.request",
            False,
            f"estimate: one empty ReceiveMessage per poller per {LONG_POLL_SECONDS} s while the queue is "
            "empty",
        )
    )
    if facts.traced:
        reservoir = min(requests, XRAY_RESERVOIR_PER_SECOND * SECONDS_PER_MONTH)
        items.append(
            _item(
                "X-Ray",
                "traces recorded (the first request each second)",
                reservoir,
                "xray.trace_recorded",
                False,
                "default sampling rule's reservoir; less when requests are rarer than one a second",
            )
        )
    items.append(_item("KMS", "customer managed keys", facts.kms_keys, "kms.key_month", False))
    if facts.sqs_kms_reuse_seconds:
        items.append(
            _item(
                "KMS",
                "requests by SQS (data-key reuse)",
                SQS_KMS_CALLERS * SECONDS_PER_MONTH / facts.sqs_kms_reuse_seconds,
                "kms.request",
                False,
                f"one data key per caller every {facts.sqs_kms_reuse_seconds} s while traffic flows",
            )
        )
    items.append(_item("CloudWatch", "alarm metrics", facts.alarm_metrics, "cloudwatch.alarm_month", False))
    if facts.dashboards:
        items.append(_item("CloudWatch", "dashboards", facts.dashboards, "cloudwatch.dashboard_month", False))
    if per.custom_metrics:
        items.append(
            _item(
                "CloudWatch",
                "custom metrics (Powertools EMF)",
                per.custom_metrics,
                "cloudwatch.custom_metric_month",
                False,
                "distinct metric names and dimensions the functions emitted in the bench",
            )
        )
    if facts.web_acls:
        items.append(_item("WAF", "web ACLs", facts.web_acls, "waf.web_acl_month", False))
        items.append(_item("WAF", "rules and managed rule groups", facts.waf_rules, "waf.rule_month", False))
    return items


def raw_storage_items(facts: TemplateFacts, config: Any, per: PerRecord, records: float) -> list[LineItem]:
    """The raw bucket at steady state: each day's requests are kept `raw_days`, the first
    `raw_transition_days` in S3 Standard and the rest in the configured class, each object moved by one
    lifecycle transition request. Objects under 128 KB never move (S3 Lifecycle's default,
    stack/retention.py), so then everything is priced as S3 Standard."""
    raw_days = facts.raw_expiration_days or int(config.retention.raw_objects_days)
    gb_per_day = records / DAYS_PER_MONTH * per.s3_bytes / GB
    after, storage_class = facts.raw_transition_days, facts.raw_storage_class
    object_bytes = per.s3_bytes / per.s3_puts if per.s3_puts else 0.0
    whole = f"raw request storage (expires after {raw_days} days)"
    if after is None or storage_class is None or after >= raw_days:
        return [_item("S3", whole, gb_per_day * raw_days, "s3.storage_gb_month", True)]
    if storage_class not in RAW_CLASS_PRICES:  # a template the config did not produce
        note = f"the template moves raw objects to {storage_class}, which this estimate has no price for"
        return [_item("S3", whole, gb_per_day * raw_days, "s3.storage_gb_month", True, note)]
    if object_bytes < TRANSITION_MIN_OBJECT_BYTES:
        note = (
            f"each raw object is about {object_bytes / 1024:.0f} KB ({per.records_per_request:g} records per "
            f"request): under the 128 KB below which S3 Lifecycle does not move objects by default, so none "
            f"moves to {storage_class}"
        )
        return [_item("S3", whole, gb_per_day * raw_days, "s3.storage_gb_month", True, note)]
    storage_key, transition_key = RAW_CLASS_PRICES[storage_class]
    title = REPLAYABLE_CLASSES[storage_class].title
    items = [
        _item(
            "S3",
            f"raw request storage (S3 Standard, first {after} days)",
            gb_per_day * after,
            "s3.storage_gb_month",
            True,
        ),
        _item(
            "S3",
            f"raw request storage in {storage_class} (days {after} to {raw_days})",
            gb_per_day * (raw_days - after),
            storage_key,
            True,
            f"{title}; objects of about {object_bytes / 1024:.0f} KB. A replay reading these pays a "
            "retrieval fee per GB (not modelled: replays are occasional)",
        ),
        _item(
            "S3",
            f"lifecycle transitions to {storage_class}",
            records * per.s3_puts,
            transition_key,
            True,
            "one transition request per raw object",
        ),
    ]
    standard = _item("S3", whole, gb_per_day * raw_days, "s3.storage_gb_month", True)
    if standard.monthly_usd is not None and all(i.monthly_usd is not None for i in items):
        difference = sum(i.monthly_usd or 0.0 for i in items) - standard.monthly_usd
        items[-1].note += (
            f"; with the storage above, ${abs(difference):,.2f} a month "
            + ("less" if difference <= 0 else "MORE")
            + " than keeping every raw request in S3 Standard"
            + ("" if difference <= 0 else " (objects too small for the transition fee to pay off)")
        )
    return items


def per_million(facts: TemplateFacts, per: PerRecord, config: Any) -> tuple[float, list[LineItem]]:
    """$ for a million records: every traffic-dependent item (storage excluded: it follows retention)."""
    items = per_record_items(facts, per, 1e6, config, marginal=True)
    return sum(i.monthly_usd or 0.0 for i in items), items


def estimate_env(
    env: str,
    records_per_day: float,
    records_per_request: float | None = None,
    record_bytes: int | None = None,
    model_path: Path | None = None,
) -> Estimate:
    """`rtp cost`: the environment's config and (cached) synthesized template, and the shipped model.
    Raises CostError (bad numbers, no model) or stack.config.ConfigError (unknown or invalid env)."""
    from stack.config import load_config

    config = load_config(env)
    # Check the numbers before the (slow, first time) synth.
    b = float(records_per_request if records_per_request is not None else config.api.max_records_per_request)
    check_inputs(
        records_per_day,
        b,
        int(record_bytes if record_bytes is not None else 1024),
        int(config.api.max_records_per_request),
    )
    model = Model.load(model_path)
    from rtp_cli.synthcache import synthesize_cached

    synth = synthesize_cached(env)
    template = json.loads(synth.template_path.read_text(encoding="utf-8"))
    return estimate(env, template, config, model, records_per_day, b, record_bytes)
