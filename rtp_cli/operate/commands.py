"""Typer layer of the operating commands: resolve the environment, call the services, render the results.

Mounted by `rtp_cli.app` through `register(app)`. Exit codes: 0 success; 1 the operation ran and
something is wrong (records not accepted, smoke test mismatch or timeout, DLQ redrive errors);
2 usage or environment errors (unknown env, not running, no credentials, refused confirmation).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Annotated, Any, BinaryIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtp_cli.cdk import is_production
from rtp_cli.console import console, err, escape
from rtp_cli.errors import fail
from rtp_cli.operate.api_client import ApiClient
from rtp_cli.operate.dlq import DeadLetterQueue
from rtp_cli.operate.inputs import InputOptions, line_ranges
from rtp_cli.operate.journal import JournalError
from rtp_cli.operate.logs import FUNCTIONS, LogLine, LogReader, log_groups, parse_since, render
from rtp_cli.operate.send import (
    BulkOptions,
    FatalSendError,
    RetryPolicy,
    SendSummary,
    SmokeRecord,
    bulk_send,
    smoke_test,
    wait_for_batches,
)
from rtp_cli.options import EnvOption, ProfileOption


def _target(env: str, profile: str | None) -> Any:
    from rtp_cli.target import ConfigError, TargetError, resolve_target

    try:
        return resolve_target(env, profile)
    except (ConfigError, TargetError) as error:
        fail(str(error))


def _api(target: Any) -> ApiClient:
    return ApiClient(target.api_url, target.region, target.credentials)


def _limits(env: str) -> tuple[int, int]:
    from stack.config import load_config

    config = load_config(env)
    return config.api.max_records_per_request, config.api.max_body_bytes


def _journal_dir() -> Path:
    from rtp_cli.target import state_dir

    return state_dir() / "send-journals"


def _confirm_destructive(env: str, action: str, yes: bool) -> None:
    """Prod: the environment name typed back. Elsewhere: a y/N question. `--yes` skips both."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{action} needs confirmation: run it in a terminal or pass --yes")
    if is_production(env):
        typed = typer.prompt(f"{action} in {env.upper()}. Type the environment name to confirm")
        if typed.strip() != env:
            fail("confirmation did not match; nothing was done")
    elif not typer.confirm(f"{action} in {env}?", default=False):
        fail("cancelled; nothing was done", 1)


# --- send --------------------------------------------------------------------------------------------


class RichProgress:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task = progress.add_task("sending", total=None, errors=0, retries=0, rate="")
        self.started = time.monotonic()
        self.done = 0
        self.errors = 0
        self.retries = 0

    def start(self, total_records: int) -> None:
        self.progress.update(self.task, total=total_records or None)

    def _refresh(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.progress.update(
            self.task,
            completed=self.done,
            errors=self.errors,
            retries=self.retries,
            rate=f"{self.done / elapsed:,.0f}/s",
        )

    def advance(self, records: int) -> None:
        self.done += records
        self._refresh()

    def error(self, count: int = 1) -> None:
        self.errors += count
        self._refresh()

    def retry(self) -> None:
        self.retries += 1
        self._refresh()


@contextmanager
def _progress() -> Iterator[RichProgress | None]:
    if not err.is_terminal:
        yield None
        return
    columns = (
        TextColumn("[bold]sending"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "records  {task.fields[rate]}  [red]errors {task.fields[errors]}[/red]  "
            "retries {task.fields[retries]}"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as progress:
        yield RichProgress(progress)


@contextmanager
def _input(file: str) -> Iterator[tuple[Any, str]]:
    """-> (a function that opens the input afresh, its display name). stdin is spooled to a temp file."""
    if file == "-":
        with tempfile.NamedTemporaryFile(prefix="rtp-send-", suffix=".input") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool)
            spool.flush()
            yield (lambda: open(spool.name, "rb")), "<stdin>"  # noqa: SIM115 - closed by bulk_send
        return
    path = Path(file)
    if path.is_dir():
        fail(f"--file {file}: is a directory; give a JSON Lines or CSV file, or - for stdin")
    if not path.is_file():
        fail(f"--file {file}: no such file")

    def opener() -> BinaryIO:
        return path.open("rb")

    yield opener, str(path)


def print_summary(summary: SendSummary, out: Console = console) -> None:
    rejected_lines = [problem.line for problem in summary.rejected]
    failed_lines = [line for lines, _ in summary.failed for line in lines]
    resumed = f" ({summary.resumed_records} by the earlier run, resumed)" if summary.resumed_records else ""
    out.print(
        f"[green]accepted[/green] {summary.accepted_records} record(s) "
        f"in {summary.accepted_batches} batch(es){resumed}"
    )
    if summary.rejected:
        out.print(f"[red]rejected[/red] {len(summary.rejected)} line(s): {line_ranges(rejected_lines)}")
        for problem in summary.rejected[:20]:
            out.print(f"  line {problem.line}: {escape(problem.reason)}", highlight=False)
        if len(summary.rejected) > 20:
            out.print(f"  ... and {len(summary.rejected) - 20} more")
    if summary.failed:
        out.print(
            f"[red]failed[/red] {summary.failed_records} record(s) on line(s) {line_ranges(failed_lines)}"
        )
        for lines, message in summary.failed[:5]:
            out.print(f"  lines {line_ranges(lines, 3)}: {escape(message)}", highlight=False)
    out.print(
        f"{summary.retries} retr{'y' if summary.retries == 1 else 'ies'}"
        f"{f', {summary.replayed_batches} replayed batch(es)' if summary.replayed_batches else ''}; "
        f"{summary.elapsed_seconds:.1f}s, {summary.rate:,.0f} records/s"
    )
    if summary.journal is not None and not summary.ok:
        out.print(f"journal: {summary.journal} (fix the cause, then rerun with --resume)")


def _smoke_table(records: list[SmokeRecord]) -> Table:
    table = Table(title="smoke test")
    for column in ("shape", "record id", "expected", "got", "latency", "detail"):
        table.add_column(column, overflow="fold")
    for record in records:
        got = record.status or "-"
        style = "green" if record.ok else "red"
        latency = f"{record.latency_ms:,.0f} ms" if record.latency_ms is not None else "-"
        table.add_row(
            record.shape,
            record.record_id,
            record.expected,
            f"[{style}]{got}[/{style}]",
            latency,
            escape(record.detail),
        )
    return table


def send(
    env: EnvOption = "local",
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="JSON Lines (or CSV) to load; - for stdin.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv (columns become `data`).")] = "jsonl",
    record_type: Annotated[
        str | None,
        typer.Option("--type", help="Record type (CSV: required; JSON Lines: default when absent)."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="CSV column holding each record's id.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight.")] = 4,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Records per request (default and maximum: the API's limit).")
    ] = None,
    max_attempts: Annotated[
        int, typer.Option(min=1, max=30, help="Attempts per batch (429, 5xx, connection).")
    ] = 8,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a killed run of the same input.")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Ignore an unfinished run and send everything.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="After loading, wait until every batch is processed.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for processing (smoke test, --wait).")
    ] = 60.0,
    profile: ProfileOption = None,
) -> None:
    """Smoke-test the pipeline (no --file), or bulk-load records from a file with retries and a journal."""
    target = _target(env, profile)
    client = _api(target)
    if file is None:
        _run_smoke(client, env, timeout)
        return
    if fmt not in ("jsonl", "csv"):
        fail(f"--format {fmt!r}: use jsonl or csv")
    if fmt == "csv" and not record_type:
        fail("--format csv needs --type: the record type of every row")
    if resume and restart:
        fail("--resume and --restart exclude each other")
    max_records, max_bytes = _limits(env)
    if batch_size is not None:
        if batch_size > max_records:
            fail(f"--batch-size {batch_size}: the API takes at most {max_records} records per request")
        max_records = batch_size
    options = BulkOptions(
        env=env,
        max_records=max_records,
        max_bytes=max_bytes,
        concurrency=concurrency,
        resume=resume,
        restart=restart,
        journal_dir=_journal_dir(),
    )
    input_options = InputOptions(fmt=fmt, record_type=record_type, id_column=id_column)
    with _input(file) as (opener, name), _progress() as progress:
        try:
            summary = bulk_send(
                opener, name, client, options, input_options, progress, RetryPolicy(max_attempts=max_attempts)
            )
        except JournalError as error:
            fail(str(error))
        except FatalSendError as error:
            fail(str(error), 1)
    print_summary(summary)
    if wait and summary.batch_ids:
        report = wait_for_batches(client, summary.batch_ids, timeout)
        console.print(
            f"processed {report.processed}, rejected by the transform {report.rejected}, "
            f"duplicates {report.duplicates}; "
            f"{report.complete} of {len(set(summary.batch_ids))} batch(es) complete"
        )
        if report.pending_batches:
            fail(
                f"{len(report.pending_batches)} batch(es) not complete after {timeout:.0f}s "
                f"(e.g. {report.pending_batches[0]}): check `rtp dlq list --env {env}`",
                1,
            )
    if not summary.ok:
        raise typer.Exit(1)


def _run_smoke(client: ApiClient, env: str, timeout: float) -> None:
    with err.status("smoke test: sending and waiting for records…") if err.is_terminal else nullcontext():
        result = smoke_test(client, timeout=timeout)
    console.print(_smoke_table(result.records))
    if result.error:
        fail(f"smoke test failed: {result.error}", 1)
    if result.timed_out:
        waiting = [r for r in result.records if not r.status]
        fail(
            f"smoke test timed out after {timeout:.0f}s: {len(waiting)} record(s) were accepted but never "
            f"processed. Is the processor running? Check `rtp dlq list --env {env}` and "
            f"`rtp logs --env {env} --function processor`.",
            1,
        )
    wrong = [r for r in result.records if not r.ok]
    if wrong:
        fail(
            "smoke test failed: "
            + "; ".join(f"{r.shape}: expected {r.expected}, got {r.status}" for r in wrong),
            1,
        )
    console.print(
        f"[green]smoke test passed[/green]: {len(result.records)} records reached their expected status"
    )


# --- show (status ID) ----------------------------------------------------------------------------------


def show(
    record_or_batch_id: Annotated[str, typer.Argument(metavar="ID", help="A record id or a batch id.")],
    env: EnvOption = "local",
    profile: ProfileOption = None,
) -> None:
    """Show one record or one batch by id (GET /records/ID, else GET /batches/ID)."""
    show_id(record_or_batch_id, env, profile)


def show_id(identifier: str, env: str, profile: str | None) -> None:
    """Also called by `rtp status ID` (the status command owns `--env` alone)."""
    import json

    client = _api(_target(env, profile))
    looks_like_batch = len(identifier) in (26, 27) and identifier.isalnum() and identifier.isupper()
    order = (
        (client.get_batch, client.get_record) if looks_like_batch else (client.get_record, client.get_batch)
    )
    for getter in order:
        response = getter(identifier)
        if response.ok and isinstance(response.body, dict):
            kind = "batch" if getter == client.get_batch else "record"
            table = Table(title=f"{kind} {identifier}", show_header=False)
            table.add_column("field", style="bold")
            table.add_column("value", overflow="fold")
            for key, value in response.body.items():
                shown = value if isinstance(value, str) else json.dumps(value, default=str)
                if key == "ids" and isinstance(value, list) and len(value) > 10:
                    shown = json.dumps(value[:10]) + f" … ({len(value)} ids)"
                table.add_row(escape(key), escape(str(shown)))
            console.print(table)
            return
        if response.status != 404:
            fail(f"{response.status}: {response.error_message()}", 1)
    fail(f"no record or batch {identifier!r} in {env} (a record appears once it is processed)", 1)


# --- logs --------------------------------------------------------------------------------------------------


def logs(
    env: EnvOption = "local",
    function: Annotated[
        str | None, typer.Option("--function", help=f"One of {', '.join(FUNCTIONS)} (default: all).")
    ] = None,
    since: Annotated[str, typer.Option(help="How far back: 30s, 10m, 2h, 1d.")] = "10m",
    text: Annotated[str | None, typer.Option("--filter", help="Only lines containing TEXT.")] = None,
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", help="Follow one request across ingest and processor.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep polling for new lines (Ctrl-C to stop).")
    ] = False,
    raw_json: Annotated[bool, typer.Option("--json", help="Print the raw log lines.")] = False,
    profile: ProfileOption = None,
) -> None:
    """Read the functions' CloudWatch logs, rendered (time, level, function, correlation id, message)."""
    try:
        start = datetime.now(UTC) - parse_since(since)
    except ValueError as error:
        fail(str(error))
    target = _target(env, profile)
    try:
        groups = log_groups(target.outputs, function)
    except ValueError as error:
        fail(str(error))
    reader = LogReader(target.client("logs"), groups)
    out: IO[str] = sys.stdout

    def emit(line: LogLine) -> None:
        if raw_json:
            out.write(line.raw.rstrip("\n") + "\n")
            out.flush()
        else:
            console.print(render(line), highlight=False, soft_wrap=True)

    if follow:
        try:
            reader.follow(start, emit, text, correlation_id)
        except KeyboardInterrupt:
            return
        return
    lines = reader.read(start, text, correlation_id)
    for line in lines:
        emit(line)
    if not lines and not raw_json:
        err.print(f"no log lines in {', '.join(groups.values())} since {since} ago matching the filters")


# --- dlq ------------------------------------------------------------------------------------------

dlq_app = typer.Typer(help="Inspect and redrive the dead-letter queue.", no_args_is_help=True)


def _dlq(env: str, profile: str | None) -> DeadLetterQueue:
    target = _target(env, profile)
    return DeadLetterQueue(
        target.client("sqs"),
        target.output("DeadLetterQueueUrl"),
        target.output("WorkQueueUrl"),
        target.client("dynamodb"),
        target.outputs.get("TableName"),
        None if target.is_local else target.client("cloudwatch"),
        target.outputs.get("ReplayQueueUrl"),
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@dlq_app.command("list")
def dlq_list(env: EnvOption = "local", profile: ProfileOption = None) -> None:
    """Depth and oldest-message age of the dead-letter queue (and the work queue it feeds back to)."""
    dlq = _dlq(env, profile)
    table = Table(title=f"queues of {env}")
    for column in ("queue", "visible", "in flight", "oldest"):
        table.add_column(column)
    for depth in (dlq.depth(dlq.url, "dead-letter queue"), dlq.depth(dlq.source_url, "work queue")):
        style = "red" if depth.name.startswith("dead") and depth.visible else ""
        table.add_row(
            depth.name,
            f"[{style}]{depth.visible}[/{style}]" if style else str(depth.visible),
            str(depth.in_flight),
            _age(depth.oldest_age_seconds),
        )
    console.print(table)


@dlq_app.command("peek")
def dlq_peek(
    env: EnvOption = "local",
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many messages.")] = 10,
    raw_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    profile: ProfileOption = None,
) -> None:
    """Show dead-lettered messages (batch, S3 key, receive count, last error) without consuming them."""
    import json

    messages = _dlq(env, profile).peek(limit)
    if raw_json:
        for message in messages:
            sys.stdout.write(
                json.dumps(
                    {
                        "messageId": message.message_id,
                        "batchId": message.batch_id,
                        "bucket": message.bucket,
                        "key": message.key,
                        "receiveCount": message.receive_count,
                        "ageSeconds": round(message.age_seconds()),
                        "correlationId": message.correlation_id,
                        "recordCount": message.record_count,
                        "lastError": message.last_error,
                        "batch": message.batch_state,
                    }
                )
                + "\n"
            )
        return
    if not messages:
        console.print("[green]the dead-letter queue is empty[/green]")
        return
    table = Table(title=f"dead-letter queue of {env} ({len(messages)} shown)")
    for column in ("batch", "S3 key", "records", "receives", "age", "last error"):
        table.add_column(column, overflow="fold")
    for message in messages:
        table.add_row(
            message.batch_id or message.message_id,
            message.key,
            str(message.record_count or "-"),
            str(message.receive_count),
            _age(message.age_seconds()),
            escape(message.last_error or "-"),
        )
    console.print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    env: EnvOption = "local",
    max_messages: Annotated[
        int | None, typer.Option("--max", min=1, help="Move at most this many messages.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would move; move nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="No confirmation (automation).")] = False,
    profile: ProfileOption = None,
) -> None:
    """Move dead-lettered messages back to the queue each came from (after the cause is fixed)."""
    dlq = _dlq(env, profile)
    if dry_run:
        result = dlq.redrive(max_messages, dry_run=True)
        console.print(f"dry run: would move {result.would_move} message(s) to the work queue; nothing moved")
        return
    if is_production(env):
        _confirm_destructive(env, "Redrive the dead-letter queue", yes)
    result = dlq.redrive(max_messages)
    how = "SQS message-move task" if result.method == "native" else "receive/send/delete"
    console.print(f"moved {result.moved} message(s) to the work queue ({how}; {result.status})")
    for error in result.errors:
        err.print(f"[red]{escape(str(error))}[/red]")
    if result.errors:
        raise typer.Exit(1)


@dlq_app.command("purge")
def dlq_purge(
    env: EnvOption = "local",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="No confirmation (automation).")] = False,
    profile: ProfileOption = None,
) -> None:
    """Delete every message in the dead-letter queue (asks first; prod asks for the name typed back)."""
    dlq = _dlq(env, profile)
    _confirm_destructive(env, "Purge the dead-letter queue (its messages are lost)", yes)
    count = dlq.purge()
    console.print(f"purged the dead-letter queue (~{count} message(s))")


def register(app: typer.Typer) -> None:
    """Add send, show, logs and dlq to the `rtp` application."""
    app.command("send")(send)
    app.command("show")(show)
    app.command("logs")(logs)
    app.add_typer(dlq_app, name="dlq")
