"""A load with a transform that fails a fraction of its calls at random (a transient fault, as the transform
contract defines it), driven through the in-process local runtime (rtp_cli/local/inprocess.py): how many
requests end in the dead-letter queue.

Used by tests/handlers/test_processor_retries.py (a seeded run must dead-letter nothing) and by
bench/transient_faults.py (the rate over several seeds). Only HTTP-level handlers and the `transform`
module are touched, so the same load runs against older versions of handlers/.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rtp_cli.local.inprocess import Pipeline


class InjectedFaultError(ConnectionError):
    """What the flaky transform raises: a downstream call that failed this time."""


@dataclass(frozen=True)
class FlakyLoad:
    requests: int
    records: int
    dead_lettered: int  # requests whose message ended in the DLQ
    complete: int  # batches COMPLETE at the end
    stored: int  # records stored (PROCESSED or REJECTED)
    transform_calls: int
    failed_calls: int
    deliveries: int  # processor deliveries of messages (first ones and redeliveries)
    seconds: float


@contextmanager
def flaky_transform(
    pipeline: Pipeline, rate: float, seed: int, calls: Counter[str]
) -> Iterator[Callable[..., Any]]:
    """Replace the processor's transform, for the block, by one that raises InjectedFaultError on a
    `rate` fraction of its calls (seeded), and otherwise runs the real default transform. `calls` counts
    the calls per record id."""
    module = pipeline.module("processor").transform  # the `transform` module the handler reads
    real = module.transform
    rng = random.Random(seed)

    def flaky(record: dict[str, Any], context: Any) -> dict[str, Any]:
        calls[context.record_id] += 1
        if rng.random() < rate:
            calls["(failed)"] += 1
            raise InjectedFaultError(f"injected transient fault for {context.record_id}")
        result: dict[str, Any] = real(record, context)
        return result

    module.transform = flaky
    try:
        yield flaky
    finally:
        module.transform = real


def run_flaky_load(
    pipeline: Pipeline, *, rate: float = 0.02, seed: int = 0, requests: int = 10, records: int = 50
) -> FlakyLoad:
    """`requests` requests of `records` records each through ingest, then the processor with the flaky
    transform until the queue is empty (each failed delivery is made visible again at once, so
    maxReceiveCount from the template decides what is dead-lettered)."""
    calls: Counter[str] = Counter()
    dead_before = pipeline.queued(pipeline.dlq_url)
    started = time.perf_counter()
    batches = []
    for number in range(requests):
        payload = {"records": [{"type": "load", "data": {"n": number, "i": i}} for i in range(records)]}
        response = pipeline.post_records(payload)
        assert response.status == 202, response.body
        batches.append(response.body)
    deliveries = 0
    with flaky_transform(pipeline, rate, seed, calls):
        for delivery in pipeline.drain(max_polls=50 * pipeline.max_receive_count):
            deliveries += len(delivery.message_ids)
    seconds = time.perf_counter() - started
    views = [pipeline.get_batch(batch["batchId"]).body for batch in batches]
    return FlakyLoad(
        requests=requests,
        records=requests * records,
        dead_lettered=pipeline.queued(pipeline.dlq_url) - dead_before,
        complete=sum(1 for view in views if view["status"] == "COMPLETE"),
        stored=sum(view["processed"] + view["rejected"] for view in views),
        transform_calls=sum(count for key, count in calls.items() if key != "(failed)"),
        failed_calls=calls["(failed)"],
        deliveries=deliveries,
        seconds=seconds,
    )
