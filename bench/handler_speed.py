"""How fast the handlers' own code is: the processor's records per second per core and ingest's time for a
500-record request, with botocore's client work included (parameter validation, serialization, signing,
response parsing) and only the HTTP exchange stubbed (botocore's `before-send` event answers each request
with a canned success, as the service would). No moto here: its server-side work would drown the figure.

Two processor cases: records without ids (the API assigns them; written 25 a call with BatchWriteItem under
a chunk lease) and records a client named (one conditional PutItem each). 1 KB records, 500 per request.

    python -m bench handler_speed [--runs 7] [--requests 20]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from rtp_cli.paths import PROJECT_ROOT

HANDLERS = PROJECT_ROOT / "handlers"
RECORDS_PER_REQUEST = 500
RECORD_BYTES = 1024
# Issue 10's targets, and the figures it measured before the storage redesign (same method).
TARGET_PROCESSOR_RPS = 4000
BEFORE_PROCESSOR_RPS = 2250
TARGET_INGEST_MS = 8.0
BEFORE_INGEST_MS = 12.9

_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_TRACE_DISABLED": "1",
    "TABLE_NAME": "rtp-bench",
    "BUCKET_NAME": "rtp-bench-raw",
    "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/rtp-bench",
}


class _Body(io.BytesIO):
    """What botocore reads a response body from (urllib3's response: `stream()` and `read()`)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.getvalue()


class StubbedHttp:
    """Answers every request a session's clients send, successfully, without a network."""

    def __init__(self) -> None:
        self.raw_objects: dict[str, bytes] = {}
        self.requests = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.requests += 1
        target = str(request.headers.get("X-Amz-Target", b""), "utf-8") if request.headers else ""
        body = b"{}"
        headers: dict[str, str] = {"x-amzn-RequestId": "bench"}
        if target.startswith("DynamoDB_"):
            operation = target.split(".", 1)[1]
            body = {"BatchWriteItem": b'{"UnprocessedItems":{}}', "BatchGetItem": b'{"Responses":{}}'}.get(
                operation, b"{}"
            )
            headers["Content-Type"] = "application/x-amz-json-1.0"
        elif target.startswith("AmazonSQS."):
            sent = json.loads(request.body)["MessageBody"].encode()
            body = json.dumps({"MessageId": "m", "MD5OfMessageBody": hashlib.md5(sent).hexdigest()}).encode()  # noqa: S324 (SQS's checksum)
            headers["Content-Type"] = "application/x-amz-json-1.0"
        elif request.method == "GET":  # S3 GetObject
            body = self.raw_objects[request.url.split("?")[0].rsplit("/", 1)[-1]]
            headers["Content-Length"] = str(len(body))
        else:  # S3 PutObject
            body, headers["ETag"] = b"", '"bench"'
        return AWSResponse(request.url, 200, headers, _Body(body))


def records(count: int, named: bool, rng: random.Random) -> list[dict[str, Any]]:
    """`count` records of about RECORD_BYTES of JSON each (seeded hex: compresses about 2x, like JSON)."""
    made = []
    for n in range(count):
        record: dict[str, Any] = {"type": "reading", "data": {"n": n, "sensor": f"s-{n % 50}"}}
        if named:
            record["id"] = f"bench-{n}"
        pad = RECORD_BYTES - len(json.dumps(record)) - 12
        record["data"]["pad"] = rng.randbytes(max(pad, 0) // 2).hex()
        made.append(record)
    return made


def _setup() -> tuple[Any, StubbedHttp]:
    os.environ.update(_ENVIRONMENT)
    if str(HANDLERS) not in sys.path:
        sys.path.insert(0, str(HANDLERS))  # the Lambda asset root: its modules are top-level
    from rtp_pipeline import aws

    aws.client.cache_clear()
    stub = StubbedHttp()
    session = boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("before-send", stub)
    return aws, stub


def measure_processor(requests: int, named: bool, seed: int) -> tuple[float, int]:
    """Records per CPU second over `requests` claim checks of 500 records; and the HTTP requests made."""
    import transform
    from rtp_pipeline.aws import client
    from rtp_pipeline.ingest import new_batch_id
    from rtp_pipeline.processing import Processor
    from rtp_pipeline.settings import Settings
    from rtp_pipeline.storage import ClaimCheck, PipelineTable, RawStore

    _, stub = _SETUP
    settings = Settings.from_environment()
    processor = Processor(
        settings,
        RawStore(client("s3"), settings.bucket_name, settings.raw_prefix),
        PipelineTable(client("dynamodb"), settings.table_name),
        transform.transform,
    )
    rng = random.Random(seed)
    claims = []
    for _ in range(requests):
        batch_id = new_batch_id()
        stub.raw_objects[f"{batch_id}.json"] = json.dumps(
            {"records": records(RECORDS_PER_REQUEST, named, rng)}
        ).encode()
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        key = f"raw/bench/{batch_id}.json"
        claims.append(ClaimCheck(batch_id, settings.bucket_name, key, "c", now, RECORDS_PER_REQUEST))
    before = stub.requests
    started = time.process_time()
    for claim in claims:
        processor.process(claim)
    spent = time.process_time() - started
    return requests * RECORDS_PER_REQUEST / spent, (stub.requests - before) // requests


def measure_ingest(requests: int, seed: int) -> float:
    """Median milliseconds (CPU) to accept one 500-record request."""
    from rtp_pipeline.aws import client
    from rtp_pipeline.ingest import Ingestor
    from rtp_pipeline.settings import Settings
    from rtp_pipeline.storage import ClaimCheckQueue, PipelineTable, RawStore

    settings = Settings.from_environment()
    ingestor = Ingestor(
        settings,
        RawStore(client("s3"), settings.bucket_name, settings.raw_prefix),
        PipelineTable(client("dynamodb"), settings.table_name),
        ClaimCheckQueue(client("sqs"), settings.queue_url),
    )
    body = json.dumps({"records": records(RECORDS_PER_REQUEST, False, random.Random(seed))}).encode()
    headers = {"content-type": "application/json"}
    times = []
    for _ in range(requests):
        started = time.process_time()
        ingestor.accept(body, headers, "c")
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


_SETUP: tuple[Any, StubbedHttp]


def main(argv: list[str] | None = None) -> int:
    global _SETUP
    parser = argparse.ArgumentParser(prog="python -m bench handler_speed", description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--requests", type=int, default=10, help="500-record requests per run")
    args = parser.parse_args(argv)
    _SETUP = _setup()
    measure_processor(2, False, 0)  # warm: imports, clients, caches
    measure_ingest(3, 0)
    assigned = [measure_processor(args.requests, False, run) for run in range(args.runs)]
    named = [measure_processor(args.requests, True, run) for run in range(args.runs)]
    ingest = [measure_ingest(args.requests, run) for run in range(args.runs)]
    rows = [
        ("processor, ids assigned by the API", statistics.median(r for r, _ in assigned), assigned[0][1]),
        ("processor, ids named by the client", statistics.median(r for r, _ in named), named[0][1]),
    ]
    print(f"medians of {args.runs} runs, {args.requests} requests of {RECORDS_PER_REQUEST} x 1 KB records")
    for label, rate, calls in rows:
        print(
            f"  {label}: {rate:,.0f} records/s per core ({rate / BEFORE_PROCESSOR_RPS:.2f}x the "
            f"{BEFORE_PROCESSOR_RPS:,} before; target >= {TARGET_PROCESSOR_RPS:,}), {calls} AWS requests each"
        )
    ingest_ms = statistics.median(ingest)
    print(
        f"  ingest, one 500-record request: {ingest_ms:.1f} ms CPU ({ingest_ms / BEFORE_INGEST_MS:.2f}x the "
        f"{BEFORE_INGEST_MS} ms before; target <= {TARGET_INGEST_MS} ms)"
    )
    met = rows[0][1] >= TARGET_PROCESSOR_RPS and ingest_ms <= TARGET_INGEST_MS
    print(f"  targets {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
