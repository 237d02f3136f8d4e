"""Ship lines to the local CloudWatch Logs groups (the ones the template names), batched in a thread."""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections import defaultdict
from typing import Any, TextIO


class LogShipper:
    """put_log_events to the local emulation every ~200 ms; optionally echo to a console stream."""

    def __init__(self, logs_client: Any, echo: TextIO | None = None, interval: float = 0.2) -> None:
        self._client = logs_client
        self._echo = echo
        self._interval = interval
        self._queue: queue.Queue[tuple[str, str, int, str] | None] = queue.Queue()
        self._streams: set[tuple[str, str]] = set()
        self._thread = threading.Thread(target=self._run, name="rtp-log-shipper", daemon=True)
        self._thread.start()

    def emit(self, group: str, stream: str, message: str, label: str = "") -> None:
        timestamp = int(time.time() * 1000)
        self._queue.put((group, stream, timestamp, message))
        if self._echo is not None:
            with contextlib.suppress(Exception):
                print(f"{label:>10} | {message}", file=self._echo, flush=True)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
            deadline = time.monotonic() + self._interval
            while True:
                timeout = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(timeout, 0.001))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group, stream, timestamp, message = item
                batch[(group, stream)].append({"timestamp": timestamp, "message": message})
                if time.monotonic() >= deadline:
                    break
            for (group, stream), events in batch.items():
                self._put(group, stream, events)

    def _put(self, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        try:
            if (group, stream) not in self._streams:
                with contextlib.suppress(self._client.exceptions.ResourceAlreadyExistsException):
                    self._client.create_log_stream(logGroupName=group, logStreamName=stream)
                self._streams.add((group, stream))
            for start in range(0, len(events), 5000):
                self._client.put_log_events(
                    logGroupName=group, logStreamName=stream, logEvents=events[start : start + 5000]
                )
        except Exception as error:  # logging must never take the runtime down
            print(f"rtp local: could not ship logs to {group}: {error}", file=sys.stderr)
