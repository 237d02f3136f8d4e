"""bench/cost.py's targets: the naive design's yardstick at 1 record per request comes from the same row."""

from __future__ import annotations

from typing import Any

from bench import cost


def _row(records_per_request: int, usd: float, naive: float | None = None) -> dict[str, Any]:
    return {
        "records_per_request": records_per_request,
        "wru": 1.0,
        "usd_per_million": usd + 0.625,  # with a key: its claim's write unit more
        "usd_per_million_without_key": usd,
        "naive_usd_per_million": naive,
    }


def test_the_naive_record_is_one_put_of_the_record_and_its_key() -> None:
    # "pk" + "REC#" + 26 + "-0" = 34 bytes of key, "data" 4 bytes: a 1024-byte record is 1062 B, 2 units
    assert cost.NAIVE_KEY_BYTES == 34
    assert cost.naive_write_units(1024) == 2.0
    assert cost.naive_write_units(1024 - 38) == 1.0


def test_the_one_per_request_target_is_met_only_at_or_below_the_naive_figure() -> None:
    """Judged on the run without an Idempotency-Key: the naive design takes no key."""

    def verdict(row: dict[str, Any]) -> tuple[float | None, bool]:
        [(_, _, limit, ok)] = [r for r in cost.target_results([row]) if r[0].limit_from]
        return limit, ok

    assert verdict(_row(1, 15.2, 13.3)) == (13.3, False)
    assert verdict(_row(1, 13.3, 13.3)) == (13.3, True)
    assert verdict(_row(1, 15.2)) == (None, False)  # no naive figure: not met, never assumed
