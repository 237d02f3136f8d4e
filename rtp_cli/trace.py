"""`rtp trace RECORD_ID` / `rtp trace --batch BATCH_ID`: everything about one record (or batch) in one screen.

The service (`trace_record`, `trace_batch`) reads the stack's resources directly, as `rtp dlq` and `rtp logs`
do, in every environment (`local` points the clients at the local emulation):

- the table (`rtp_pipeline.storage.PipelineTable`): the record item `REC#<id>` (its outcome), the batch
  item `BATCH#<batchId>` (counters, `rawKey`, `correlationId`, `receivedAt`, `lastError`) and, for client
  ids, `IDS#<batchId>` (through `get_batch`);
- the raw bucket: the request as sent, and in it the record by index (an API-assigned id
  `<batchId>-<index>` carries its index; a client id is looked up among the batch's ids);
- the dead-letter queue, peeked without deleting (received with VisibilityTimeout=0, `DeadLetterQueue`):
  whether the batch's claim check is there;
- the functions' log groups, filtered by the batch's correlation id (`LogReader`), and the X-Ray trace ids
  the Powertools lines carry (`xray_trace_id`), as console links outside `local`.

A record not stored yet is found through its batch when its id names one (`<batchId>-<n>`), or when a
claim check in the DLQ belongs to a batch that accepted it (a client id of a dead-lettered batch).
Not found at all: `TraceNotFoundError` (exit 1), saying whether a batch with the id's prefix exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from botocore.exceptions import BotoCoreError, ClientError

from rtp_cli.errors import fail
from rtp_cli.options import EnvOption, ProfileOption

# Ids the API assigns: a batch id (a ULID, or a keyed one: `K` after the time), a dash, the record's index in
# the request (rtp_pipeline.ingest.DERIVED_ID, kept here so that the CLI does not import the ingest module).
DERIVED_ID = re.compile(r"(?P<batch>[0-9A-HJKMNP-TV-Z]{10}K?[0-9A-HJKMNP-TV-Z]{16})-(?P<index>[0-9]+)")
BATCH_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{10}K?[0-9A-HJKMNP-TV-Z]{16}")  # rtp_pipeline.storage.BATCH_ID
# X-Ray trace ids: `1-<8 hex digits: epoch seconds>-<24 hex digits>`
# (https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html#xray-api-traceids).
# Powertools' Logger writes the Root of the function's `_X_AMZN_TRACE_ID` (the X-Ray tracing header Lambda
# sets: https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime)
# as `xray_trace_id` on every line (aws_lambda_powertools/logging/formatter.py, `_get_latest_trace_id`).
XRAY_TRACE_ID = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
# A partition key holds at most 2048 bytes (storage.KEY_LIMITS): a longer id was never stored, and
# DynamoDB would refuse the GetItem (ValidationException) rather than answer "no item".
MAX_KEY_BYTES = 2048
DLQ_SAMPLE = 100  # DLQ messages looked at (a sample: SQS returns some messages per receive)
LOGS_BEFORE = timedelta(minutes=1)  # logs are read from the batch's receivedAt minus this (clock skew)
LOG_LINES_SHOWN = 200


class TraceNotFoundError(Exception):
    """Nothing is known of the id: exit 1."""


@dataclass
class Sources:
    """The clients and names one trace reads; tests build it from a local target."""

    table: Any  # rtp_pipeline.storage.PipelineTable
    s3: Any
    bucket: str
    dlq: Any | None  # rtp_cli.operate.dlq.DeadLetterQueue (without a table: only the claim checks are read)
    logs: Any | None  # rtp_cli.operate.logs.LogReader
    region: str
    is_local: bool


def sources_for(target: Any) -> Sources:
    """The sources of an environment (`rtp_cli.target.Target`), named by the stack's outputs."""
    from rtp_pipeline.storage import PipelineTable

    from rtp_cli.operate.dlq import DeadLetterQueue
    from rtp_cli.operate.logs import LogReader, log_groups

    try:
        groups = log_groups(target.outputs)
    except ValueError:
        groups = {}
    return Sources(
        table=PipelineTable(target.client("dynamodb"), target.output("TableName")),
        s3=target.client("s3"),
        bucket=target.output("RawBucketName"),
        dlq=DeadLetterQueue(target.client("sqs"), target.output("DeadLetterQueueUrl"), "")
        if "DeadLetterQueueUrl" in target.outputs
        else None,
        logs=LogReader(target.client("logs"), groups) if groups else None,
        region=target.region,
        is_local=target.is_local,
    )


# --- the service -------------------------------------------------------------------------------------


def trace_record(sources: Sources, record_id: str) -> dict[str, Any]:
    """Everything known of one record. Raises TraceNotFoundError when neither it nor its batch is known."""
    if not _storable_key(f"REC#{record_id}"):
        raise TraceNotFoundError(
            f"no record {record_id[:80]!r}: not an id the table can hold (over 2048 bytes, or not UTF-8)"
        )
    stored = sources.table.get_record(record_id)
    derived = DERIVED_ID.fullmatch(record_id)
    batch_id = str(stored["batchId"]) if stored else (derived.group("batch") if derived else "")
    batch = sources.table.get_batch(batch_id) if batch_id else None
    dlq = _dlq_batches(sources)
    if stored is None and (batch is None or record_id not in batch.get("ids", [])):
        batch = _batch_in_dlq_holding(sources, record_id, dlq["batchIds"]) if not derived else None
        if batch is None:
            raise TraceNotFoundError(_not_found_message(sources, record_id, derived))
        batch_id = str(batch["batchId"])
    report: dict[str, Any] = {"kind": "record", "recordId": record_id}
    report["batch"] = _batch_summary(batch, batch_id)
    report["outcome"] = _outcome(stored, batch)
    report["raw"] = _raw(sources, batch, record_id)
    report["dlq"] = _dlq_presence(dlq, batch_id)
    report.update(_logs(sources, batch))
    return report


def trace_batch(sources: Sources, batch_id: str) -> dict[str, Any]:
    """Everything known of one batch. Raises TraceNotFoundError when the table has no such batch."""
    batch = sources.table.get_batch(batch_id) if _storable_key(f"BATCH#{batch_id}") else None
    if batch is None:
        raise TraceNotFoundError(
            f"no batch {batch_id[:80]!r} (expired, never accepted, or the id is mistyped)"
            + (
                ""
                if BATCH_ID.fullmatch(batch_id)
                else ": a batch id is 26 or 27 characters of Crockford base32"
            )
        )
    report: dict[str, Any] = {"kind": "batch", "batchId": batch_id, "batch": _batch_summary(batch, batch_id)}
    report["raw"] = _raw(sources, batch, None)
    report["dlq"] = _dlq_presence(_dlq_batches(sources), batch_id)
    report.update(_logs(sources, batch))
    return report


def _storable_key(key: str) -> bool:
    try:
        return 0 < len(key.encode("utf-8")) <= MAX_KEY_BYTES
    except UnicodeEncodeError:  # a lone surrogate (bytes the terminal could not decode): never a stored id
        return False


def _not_found_message(sources: Sources, record_id: str, derived: re.Match[str] | None) -> str:
    message = f"no record {record_id!r}: not processed (maybe still queued) and no batch holds it"
    if derived:
        batch_id = derived.group("batch")
        batch = sources.table.get_batch(batch_id)
        if batch is None:
            return f"{message}; no batch {batch_id} either (expired, or the id is mistyped)"
        return f"{message}; batch {batch_id} exists but accepted {batch.get('accepted')} record(s)"
    return message + " (a client id is found once processed, or while its batch is in the DLQ)"


def _batch_summary(batch: dict[str, Any] | None, batch_id: str) -> dict[str, Any]:
    if batch is None:
        return {"batchId": batch_id, "found": False}
    counts = {name: int(batch.get(name, 0)) for name in ("accepted", "processed", "rejected", "duplicates")}
    done = counts["processed"] + counts["rejected"] + counts["duplicates"]
    return {
        "batchId": batch_id,
        "found": True,
        "status": "COMPLETE" if done >= counts["accepted"] else "IN_PROGRESS",
        **counts,
        "pending": max(counts["accepted"] - done, 0),
        "receivedAt": batch.get("receivedAt"),
        "correlationId": batch.get("correlationId", ""),
        "rawKey": batch.get("rawKey", ""),
        "lastError": batch.get("lastError"),
    }


# What a stored record says about its outcome (the replay fields only once `rtp replay` replaced it).
OUTCOME_FIELDS = (
    "status",
    "type",
    "reason",
    "result",
    "processedAt",
    "transformVersion",
    "replayedAt",
    "replayId",
    "previousStatus",
)


def _outcome(stored: dict[str, Any] | None, batch: dict[str, Any] | None) -> dict[str, Any]:
    if stored is None:
        return {"status": "NOT_PROCESSED"}
    outcome: dict[str, Any] = {name: stored.get(name) for name in OUTCOME_FIELDS if name in stored}
    outcome["latencyMs"] = _latency_ms(batch.get("receivedAt") if batch else None, stored.get("processedAt"))
    return outcome


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _latency_ms(received_at: Any, processed_at: Any) -> int | None:
    """Ingest to processed: processedAt - the batch's receivedAt."""
    received, processed = _moment(received_at), _moment(processed_at)
    if received is None or processed is None:
        return None
    return round((processed - received).total_seconds() * 1000)


def _raw(sources: Sources, batch: dict[str, Any] | None, record_id: str | None) -> dict[str, Any]:
    key = str(batch.get("rawKey", "")) if batch else ""
    raw: dict[str, Any] = {"bucket": sources.bucket, "key": key}
    if not key:
        raw["error"] = "no raw key (no batch item)"
        return raw
    try:
        body = sources.s3.get_object(Bucket=sources.bucket, Key=key)["Body"].read()
    except ClientError as error:
        raw["error"] = (
            f"cannot read s3://{sources.bucket}/{key}: {error.response.get('Error', {}).get('Code')}"
        )
        return raw
    raw["bytes"] = len(body)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raw["error"] = f"the raw object is not JSON: {error}"
        return raw
    records = payload["records"] if isinstance(payload, dict) and "records" in payload else [payload]
    raw["records"] = len(records) if isinstance(records, list) else 0
    if record_id is None or not isinstance(records, list):
        return raw
    index = _index_of(record_id, batch or {}, records)
    raw["index"] = index
    if index is not None and 0 <= index < len(records):
        raw["record"] = records[index]
    else:
        raw["error"] = f"record {record_id!r} not found in the raw request"
    return raw


def _index_of(record_id: str, batch: dict[str, Any], records: list[Any]) -> int | None:
    derived = DERIVED_ID.fullmatch(record_id)
    if derived and derived.group("batch") == batch.get("batchId"):
        return int(derived.group("index"))
    ids = batch.get("ids") or []
    if record_id in ids:
        return int(ids.index(record_id))
    for index, record in enumerate(records):  # the batch item has no ids (written by an older layout)
        if isinstance(record, dict) and record.get("id") == record_id:
            return index
    return None


def _dlq_batches(sources: Sources) -> dict[str, Any]:
    """The batch ids of a sample of the DLQ's claim checks, read without deleting anything."""
    if sources.dlq is None:
        return {"checked": False, "batchIds": {}, "sampled": 0}
    try:
        messages = sources.dlq.peek(DLQ_SAMPLE)
    except (ClientError, BotoCoreError) as error:
        return {"checked": False, "error": str(error), "batchIds": {}, "sampled": 0}
    batch_ids: dict[str, dict[str, Any]] = {}
    for message in messages:
        if message.batch_id:
            batch_ids[message.batch_id] = {
                "messageId": message.message_id,
                "receiveCount": message.receive_count,
                "ageSeconds": round(message.age_seconds()),
            }
    return {"checked": True, "batchIds": batch_ids, "sampled": len(messages)}


def _dlq_presence(dlq: dict[str, Any], batch_id: str) -> dict[str, Any]:
    presence: dict[str, Any] = {"checked": dlq["checked"], "sampled": dlq["sampled"]}
    if "error" in dlq:
        presence["error"] = dlq["error"]
    message = dlq["batchIds"].get(batch_id)
    presence["inDlq"] = message is not None
    if message:
        presence["message"] = message
    return presence


def _batch_in_dlq_holding(
    sources: Sources, record_id: str, batch_ids: dict[str, Any]
) -> dict[str, Any] | None:
    """A client id is not in any key until processed: look among the ids of the dead-lettered batches."""
    for batch_id in batch_ids:
        batch = sources.table.get_batch(batch_id)
        if batch and record_id in batch.get("ids", []):
            return dict(batch)
    return None


def _logs(sources: Sources, batch: dict[str, Any] | None) -> dict[str, Any]:
    correlation_id = str(batch.get("correlationId", "")) if batch else ""
    found: dict[str, Any] = {"logs": [], "xray": {"traceIds": [], "links": []}}
    if sources.logs is None or not correlation_id:
        found["logsNote"] = "no log groups in the outputs" if sources.logs is None else "no correlation id"
        return found
    received = _moment(batch.get("receivedAt") if batch else None) or datetime.now(UTC) - timedelta(hours=1)
    try:
        # A fresh reader: LogReader remembers what it returned (for `follow`), and a trace is a snapshot.
        reader = type(sources.logs)(sources.logs.logs, sources.logs.groups)
        lines = reader.read(received - LOGS_BEFORE, correlation_id=correlation_id)
    except (ClientError, BotoCoreError) as error:
        found["logsNote"] = f"cannot read the logs: {error}"
        return found
    trace_ids: list[str] = []
    for line in lines:
        trace_id = str((line.fields or {}).get("xray_trace_id") or "")
        if XRAY_TRACE_ID.fullmatch(trace_id) and trace_id not in trace_ids:
            trace_ids.append(trace_id)
    found["logs"] = [
        {
            "function": line.function,
            "time": line.time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": line.level,
            "message": line.message,
            "fields": line.fields,
        }
        for line in lines
    ]
    found["xray"] = {
        "traceIds": trace_ids,
        "links": [] if sources.is_local else [xray_link(sources.region, trace_id) for trace_id in trace_ids],
    }
    return found


def xray_link(region: str, trace_id: str) -> str:
    """The trace's page in the CloudWatch console (X-Ray traces > Traces:
    https://docs.aws.amazon.com/xray/latest/devguide/xray-console-traces.html)."""
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#xray:traces/{trace_id}"


# --- rendering ---------------------------------------------------------------------------------------


def render_lines(report: dict[str, Any], env: str) -> list[str]:
    """The report for people: rich markup lines (values escaped)."""
    from rich.markup import escape

    def value(item: Any) -> str:
        return escape(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, default=str))

    lines: list[str] = []
    title = f"record {report['recordId']}" if report["kind"] == "record" else f"batch {report['batchId']}"
    lines.append(f"[bold]{escape(title)}[/bold] in {escape(env)}")
    batch = report["batch"]
    if batch.get("found"):
        lines.append(
            f"[bold]batch[/bold]     {value(batch['batchId'])} {value(batch['status'])}: accepted "
            f"{batch['accepted']}, processed {batch['processed']}, rejected {batch['rejected']}, duplicates "
            f"{batch['duplicates']}, pending {batch['pending']}; received {value(batch['receivedAt'])}"
        )
        if batch.get("lastError"):
            lines.append(f"[bold]last error[/bold] [red]{value(batch['lastError'])}[/red]")
    else:
        lines.append(f"[bold]batch[/bold]     {value(batch['batchId'])} [yellow]not in the table[/yellow]")
    raw = report["raw"]
    lines.append(f"[bold]raw[/bold]       s3://{value(raw['bucket'])}/{value(raw['key'])}")
    if "record" in raw:
        lines.append(f"[bold]as sent[/bold]   (index {raw['index']}) {value(raw['record'])}")
    elif "records" in raw:
        lines.append(f"[bold]records[/bold]   {raw['records']} in the request ({raw.get('bytes', 0)} bytes)")
    if raw.get("error"):
        lines.append(f"[yellow]raw: {value(raw['error'])}[/yellow]")
    if report["kind"] == "record":
        outcome = report["outcome"]
        status = outcome["status"]
        style = {"PROCESSED": "green", "REJECTED": "red"}.get(status, "yellow")
        lines.append(f"[bold]outcome[/bold]   [{style}]{status}[/{style}]")
        for name in OUTCOME_FIELDS[1:]:
            if outcome.get(name) is not None:
                lines.append(f"  {name:<16} {value(outcome[name])}")
        if outcome.get("latencyMs") is not None:
            lines.append(f"  {'latency':<16} {outcome['latencyMs']} ms (ingest to processed)")
    dlq = report["dlq"]
    if not dlq["checked"]:
        lines.append(f"[bold]dlq[/bold]       not checked {value(dlq.get('error', '(no DLQ output)'))}")
    elif dlq["inDlq"]:
        message = dlq["message"]
        lines.append(
            f"[bold]dlq[/bold]       [red]the batch's claim check is in the DLQ[/red] (message "
            f"{value(message['messageId'])}, received {message['receiveCount']} times, "
            f"{message['ageSeconds']} s old); `rtp dlq peek` / `rtp dlq redrive`"
        )
    else:
        lines.append(f"[bold]dlq[/bold]       not in the DLQ (looked at {dlq['sampled']} message(s))")
    xray = report["xray"]
    if xray["links"]:
        lines += [f"[bold]x-ray[/bold]     {escape(link)}" for link in xray["links"]]
    elif xray["traceIds"]:
        lines.append(
            f"[bold]x-ray[/bold]     trace ids {value(xray['traceIds'])} (no console in {escape(env)})"
        )
    else:
        lines.append("[bold]x-ray[/bold]     none (no xray_trace_id in the log lines)")
    logs = report["logs"]
    note = f" ({value(report['logsNote'])})" if report.get("logsNote") else ""
    correlation = value(batch.get("correlationId", ""))
    lines.append(f"[bold]logs[/bold]      {len(logs)} line(s) for correlation id {correlation}{note}")
    for line in logs[-LOG_LINES_SHOWN:]:
        lines.append(
            f"  {line['time'][11:23]} {escape(line['level'] or '-'):<8} [cyan]{line['function']:<9}[/cyan] "
            f"{escape(line['message'])}"
        )
    return lines


# --- the command -------------------------------------------------------------------------------------


def trace(
    record_id: Annotated[
        str | None, typer.Argument(metavar="RECORD_ID", help="A record id (omit with --batch).")
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option("--batch", metavar="BATCH_ID", help="Trace a batch instead of a record.")
    ] = None,
    env: EnvOption = "local",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (for machines).")] = False,
    profile: ProfileOption = None,
) -> None:
    """Everything about one record (or --batch): batch, raw request, outcome, DLQ, logs, X-Ray link."""
    from rtp_cli.console import console
    from rtp_cli.target import ConfigError, TargetError, resolve_target

    if (record_id is None) == (batch_id is None):
        fail("give a RECORD_ID or --batch BATCH_ID (one of them)")
    try:
        target = resolve_target(env, profile)
        sources = sources_for(target)
        report = (
            trace_record(sources, record_id) if record_id is not None else trace_batch(sources, str(batch_id))
        )
    except (ConfigError, TargetError) as error:
        fail(str(error))
    except TraceNotFoundError as error:
        fail(str(error), 1)
    except (ClientError, BotoCoreError) as error:
        fail(f"cannot read the {env} environment: {error}")
    if as_json:
        print(json.dumps(report, ensure_ascii=False, default=str))
        return
    for line in render_lines(report, env):
        console.print(line, highlight=False, soft_wrap=True)
