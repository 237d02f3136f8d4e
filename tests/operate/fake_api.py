"""A tiny HTTP server speaking the pipeline API's contract, for unit tests of `rtp send` without the
local runtime: SigV4 header presence, POST /records with Idempotency-Key replay, GET /records|batches,
and scripted faults (status codes, dropped connections) to exercise retries."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeState:
    faults: list[Any] = field(default_factory=list)  # next responses: int status, or "drop"
    # if > 0: every Nth POST that is a key's first attempt answers 429 (throttling). Only first attempts,
    # so the scripted load stays bounded: a retry cannot keep landing on the throttled slot by chance.
    fault_every: int = 0
    seen_keys: set[str] = field(default_factory=set)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    attempts: list[tuple[str | None, int]] = field(default_factory=list)  # (idempotency key, status)
    posts: int = 0
    status_of: dict[str, str] = field(default_factory=dict)  # record id -> PROCESSED/REJECTED, set by tests
    process: bool = True  # "processor running": records get a status when posted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stored_record_count(self) -> int:
        return len(self.records)


def _status_for(record: dict[str, Any]) -> tuple[str, str | None]:
    if not record.get("data"):
        return "REJECTED", "data is empty: nothing to process"
    ts = record.get("timestamp")
    if ts:
        from datetime import UTC, datetime

        when = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
        if (when - datetime.now(UTC)).total_seconds() > 300:
            return "REJECTED", "timestamp in the future"
    return "PROCESSED", None


def make_handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: without this, each answer
        # waits ~40 ms for the client's delayed ACK (Nagle)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if not (auth.startswith("AWS4-HMAC-SHA256 ") and "/execute-api/aws4_request" in auth):
                self._send(403, {"message": "Missing Authentication Token"})
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if not self._authorized():
                return
            key = self.headers.get("Idempotency-Key")
            with state.lock:
                state.posts += 1
                fault = state.faults.pop(0) if state.faults else None
                first_attempt = key not in state.seen_keys
                state.seen_keys.add(key or "")
                if (
                    fault is None
                    and state.fault_every
                    and first_attempt
                    and state.posts % state.fault_every == 0
                ):
                    fault = 429
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                state.attempts.append((key, 0))
                return
            if isinstance(fault, int):
                state.attempts.append((key, fault))
                self._send(fault, {"message": "Too Many Requests" if fault == 429 else "fault"})
                return
            payload = json.loads(body)
            records = payload.get("records", [payload])
            with state.lock:
                if key and key in state.keys:
                    digest, response = state.keys[key]
                    if digest != hashlib.sha256(body).hexdigest():
                        self._send(422, {"error": {"code": "IDEMPOTENCY_KEY_REUSED", "message": "reused"}})
                        return
                    state.attempts.append((key, 202))
                    self._send(202, response, {"Idempotent-Replayed": "true"})
                    return
                bad = [
                    {"index": i, "field": f"records[{i}].type", "message": "is required"}
                    for i, r in enumerate(records)
                    if "type" not in r
                ]
                if bad:
                    state.attempts.append((key, 400))
                    self._send(400, {"error": {"code": "VALIDATION_ERROR", "message": "bad", "details": bad}})
                    return
                batch_id = f"B{len(state.batches):025d}"
                ids = [str(r.get("id") or f"{batch_id}-{i}") for i, r in enumerate(records)]
                response = {"batchId": batch_id, "accepted": len(records), "ids": ids}
                state.batches[batch_id] = {"batchId": batch_id, "accepted": len(ids), "ids": ids}
                for record_id, record in zip(ids, records, strict=True):
                    if record_id in state.records:
                        continue
                    status, reason = _status_for(record)
                    state.records[record_id] = {
                        "recordId": record_id,
                        "batchId": batch_id,
                        "status": status,
                        **({"reason": reason} if reason else {}),
                    }
                if key:
                    state.keys[key] = (hashlib.sha256(body).hexdigest(), response)
                state.attempts.append((key, 202))
            self._send(202, response)

        def do_GET(self) -> None:
            if not self._authorized():
                return
            parts = self.path.strip("/").split("/")[1:]  # drop the stage
            if len(parts) == 2 and parts[0] == "records":
                record = state.records.get(parts[1]) if state.process else None
                if record:
                    self._send(200, record)
                else:
                    self._send(404, {"error": {"code": "NOT_FOUND", "message": "no record"}})
                return
            if len(parts) == 2 and parts[0] == "batches" and parts[1] in state.batches:
                batch = state.batches[parts[1]]
                done = state.process
                self._send(
                    200,
                    {
                        **batch,
                        "status": "COMPLETE" if done else "IN_PROGRESS",
                        "processed": batch["accepted"] if done else 0,
                        "rejected": 0,
                        "duplicates": 0,
                    },
                )
                return
            self._send(404, {"error": {"code": "NOT_FOUND", "message": "nothing here"}})

    return Handler


@contextmanager
def fake_api() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/", state
    finally:
        server.shutdown()
        server.server_close()
