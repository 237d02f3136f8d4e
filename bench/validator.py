"""Record validation speed: the hand-written validator against jsonschema and fastjsonschema.

`python -m bench validator [--runs 7] [--records 2000]`. Each run validates the same records with each
validator; the figure is the median over the runs, per 1,000 records, and the ratio to the hand-written
validator. Two corpora: valid records shaped like real traffic (id, type, source, timestamp, a data object
of a dozen fields), and invalid ones (three broken fields each).

What is measured, per validator:
- `hand-written`: `rtp_pipeline.validation.validate_record`, every violation of the record, plus what the
  schema cannot say (real timestamps, valid Unicode, DynamoDB's rules for `data`: it walks all of `data`);
- `hand-written (schema only)`: the schema compiled into closures alone (`_record_check`), the rules the
  others check;
- `jsonschema (all errors)`: `Draft4Validator.iter_errors`, every violation, the schema's rules only;
- `jsonschema (is_valid)`: stops at the first violation;
- `fastjsonschema`: the schema compiled to Python code; raises at the first violation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import rtp_pipeline.validation as validation
from jsonschema import Draft4Validator  # type: ignore[import-untyped]


def corpora(count: int) -> dict[str, list[dict[str, Any]]]:
    valid: list[dict[str, Any]] = [
        {
            "id": f"order-{index:08d}",
            "type": "order.created",
            "source": "shop-eu-1",
            "timestamp": f"2024-05-{1 + index % 28:02d}T10:{index % 60:02d}:00.123Z",
            "data": {
                "sku": f"SKU-{index % 977}",
                "qty": 1 + index % 5,
                "price": 9.99 + index % 100,
                "currency": "EUR",
                "customer": {"id": f"c-{index % 5000}", "tier": "gold", "country": "DE"},
                "tags": ["web", "promo"] if index % 2 else ["app"],
                "gift": index % 7 == 0,
                "note": None,
            },
        }
        for index in range(count)
    ]
    invalid = [
        {**record, "id": "-" + record["id"], "type": "", "timestamp": "yesterday", "extra": 1}
        for record in valid
    ]
    return {"valid": valid, "invalid": invalid}


def validators() -> dict[str, Callable[[dict[str, Any]], Any]]:
    schema = validation.record_schema()
    draft4 = Draft4Validator(schema)
    found: dict[str, Callable[[dict[str, Any]], Any]] = {
        "hand-written": validation.validate_record,
        "hand-written (schema only)": lambda record: validation._record_check()(record, ""),
        "jsonschema (all errors)": lambda record: list(draft4.iter_errors(record)),
        "jsonschema (is_valid)": draft4.is_valid,
    }
    try:
        import fastjsonschema
    except ImportError:
        print("fastjsonschema is not installed: compared with jsonschema only")
        return found
    compiled = fastjsonschema.compile(schema)

    def fast(record: dict[str, Any]) -> bool:
        try:
            compiled(record)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    found["fastjsonschema"] = fast
    return found


def measure(runs: int, count: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per 1,000 records: corpus -> validator -> ms."""
    results: dict[str, dict[str, float]] = {}
    checks = validators()
    for corpus, records in corpora(count).items():
        timings: dict[str, list[float]] = {name: [] for name in checks}
        for _ in range(runs):
            for name, check in checks.items():  # interleaved: machine load affects every validator alike
                started = time.perf_counter()
                for record in records:
                    check(record)
                timings[name].append((time.perf_counter() - started) * 1000 * 1000 / len(records))
        results[corpus] = {name: statistics.median(values) for name, values in timings.items()}
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench validator")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args(argv)
    for corpus, figures in measure(args.runs, args.records).items():
        base = figures["hand-written"]
        print(f"{corpus} records ({args.records} per run, median of {args.runs} runs):")
        for name, ms in figures.items():
            print(f"  {name:<27} {ms:8.2f} ms per 1,000 records  ({ms / base:5.2f}x hand-written)")
    return 0
