"""`rtp logs`: read the functions' CloudWatch log groups, render Powertools JSON logs for people.

The log groups come from the stack outputs (IngestLogGroup, ProcessorLogGroup, QueryLogGroup). The
correlation id of an API request (its API Gateway request id) is on every ingest log line, and the
processor sets the same id when it handles that request's claim check, so `--correlation-id` follows one
request across both functions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

FUNCTIONS = ("ingest", "processor", "query")
OUTPUT_KEYS = {"ingest": "IngestLogGroup", "processor": "ProcessorLogGroup", "query": "QueryLogGroup"}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Powertools keys shown in the fixed columns, or noise in a terminal; everything else is printed as k=v.
_SHOWN = {
    "level",
    "message",
    "timestamp",
    "service",
    "correlation_id",
    "location",
    "cold_start",
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "xray_trace_id",
    "sampling_rate",
}


def parse_since(value: str) -> timedelta:
    """'10m', '2h', '30s', '1d' -> timedelta."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"--since {value!r}: use a number and a unit, e.g. 30s, 10m, 2h, 1d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def log_groups(outputs: dict[str, str], function: str | None = None) -> dict[str, str]:
    """function name -> log group name, from the stack outputs."""
    names = [function] if function else list(FUNCTIONS)
    groups = {}
    for name in names:
        if name not in OUTPUT_KEYS:
            raise ValueError(f"unknown function {name!r}: choose from {', '.join(FUNCTIONS)}")
        if OUTPUT_KEYS[name] in outputs:
            groups[name] = outputs[OUTPUT_KEYS[name]]
    if not groups:
        raise ValueError(f"the environment's outputs name no log group for {', '.join(names)}")
    return groups


@dataclass(frozen=True)
class LogLine:
    function: str
    timestamp_ms: int
    event_id: str
    raw: str
    fields: dict[str, Any] | None  # the parsed JSON line, None for plain text (START/END/REPORT, prints)

    @property
    def level(self) -> str:
        return str(self.fields.get("level", "")) if self.fields else ""

    @property
    def correlation_id(self) -> str:
        return str(self.fields.get("correlation_id") or "") if self.fields else ""

    @property
    def message(self) -> str:
        return str(self.fields.get("message", "")) if self.fields else self.raw.rstrip("\n")

    def extras(self) -> dict[str, Any]:
        if not self.fields:
            return {}
        return {k: v for k, v in self.fields.items() if k not in _SHOWN and not k.startswith("exception")}

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


def parse_event(function: str, event: dict[str, Any]) -> LogLine:
    raw = str(event.get("message", ""))
    fields: dict[str, Any] | None = None
    text = raw.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
            fields = parsed if isinstance(parsed, dict) else None
        except json.JSONDecodeError:
            fields = None
    return LogLine(function, int(event.get("timestamp", 0)), str(event.get("eventId", "")), raw, fields)


def _matches(line: LogLine, text: str | None, correlation_id: str | None) -> bool:
    if correlation_id and line.correlation_id != correlation_id:
        return False
    return not text or text in line.raw


class LogReader:
    """filter_log_events over several groups, merged by time; `follow` polls for new events."""

    def __init__(self, logs_client: Any, groups: dict[str, str]) -> None:
        self.logs, self.groups = logs_client, groups
        self._seen: set[tuple[str, str]] = set()

    def _fetch(
        self, function: str, group: str, start_ms: int, pattern: str | None
    ) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "interleaved": True}
        if pattern:
            kwargs["filterPattern"] = pattern
        while True:
            try:
                page = self.logs.filter_log_events(**kwargs)
            except self.logs.exceptions.ResourceNotFoundException:
                return  # no log group yet: the function has not run since deploy
            yield from page.get("events", [])
            token = page.get("nextToken")
            if not token or not page.get("events"):
                return
            kwargs["nextToken"] = token

    def read(
        self, start: datetime, text: str | None = None, correlation_id: str | None = None
    ) -> list[LogLine]:
        # Server side: a quoted term (supported by CloudWatch and by moto) narrows what is transferred;
        # the exact checks run here, on the parsed line.
        term = correlation_id or text
        pattern = json.dumps(term) if term else None
        start_ms = int(start.timestamp() * 1000)
        lines = []
        for function, group in self.groups.items():
            for event in self._fetch(function, group, start_ms, pattern):
                key = (
                    group,
                    str(event.get("eventId", "")) or f"{event.get('timestamp')}:{event.get('message')}",
                )
                if key in self._seen:
                    continue
                self._seen.add(key)
                line = parse_event(function, event)
                if _matches(line, text, correlation_id):
                    lines.append(line)
        return sorted(lines, key=lambda line: line.timestamp_ms)

    def follow(
        self,
        start: datetime,
        emit: Callable[[LogLine], None],
        text: str | None = None,
        correlation_id: str | None = None,
        interval: float = 2.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Print what exists since `start`, then poll for new events until `should_stop()` (or Ctrl-C)."""
        since = start
        while True:
            lines = self.read(since, text, correlation_id)
            for line in lines:
                emit(line)
            if lines:
                # Overlap by a few seconds: late-arriving events with older timestamps are still caught,
                # and the seen-set drops what was already printed.
                since = max(since, lines[-1].time - timedelta(seconds=5))
            if should_stop():
                return
            time.sleep(interval)


LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}


def render(line: LogLine) -> str:
    """Rich markup for one line: time, level (coloured), function, correlation id, message, extras."""
    from rich.markup import escape

    when = line.time.strftime("%H:%M:%S.%f")[:-3]
    if not line.fields:
        return f"[dim]{when} {'':8} {line.function:<9} {'':<36} {escape(line.message)}[/dim]"
    level = line.level or "-"
    style = LEVEL_STYLES.get(level.upper(), "white")
    extras = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in line.extras().items())
    text = (
        f"{when} [{style}]{level:<8}[/{style}] [cyan]{line.function:<9}[/cyan] "
        f"[magenta]{line.correlation_id or '-':<36}[/magenta] {escape(line.message)}"
    )
    if extras:
        text += f" [dim]{escape(extras)}[/dim]"
    if line.fields and line.fields.get("exception"):
        text += "\n" + escape(str(line.fields["exception"]))
    return text
