"""bench/cost.py's targets: the naive design's yardstick at 1 record per request comes from the same row."""

from __future__ import annotations

from typing import Any

from bench import cost


def _row(records_per_request: int, usd: float, naive: float | None = None) -> dict[str, Any]:
    return {
        "records_per_request": records_per_request,
        "wru": 1.0,
        "usd_per_million": usd,
        "usd_per_million_with_key": usd,
        "naive_usd_per_million": naive,
        "usd_per_million_without_key": usd - 0.5,
        "naive_usd_per_million_without_key": None if naive is None else naive - 0.5,
    }


def test_the_naive_record_is_one_put_of_the_record_and_its_key() -> None:
    # "pk" + "REC#" + 26 + "-0" = 34 bytes of key, "data" 4 bytes: a 1024-byte record is 1062 B, 2 units
    assert cost.NAIVE_KEY_BYTES == 34
    assert cost.naive_write_units(1024) == 2.0
    assert cost.naive_write_units(1024 - 38) == 1.0


def test_the_one_per_request_targets_are_met_only_at_or_below_the_naive_figure() -> None:
    """With a key (as `rtp send` sends) and without (as the naive design takes requests): each against the
    naive design priced from its own run."""

    def verdicts(row: dict[str, Any]) -> list[tuple[float | None, bool]]:
        return [(limit, ok) for target, _, limit, ok in cost.target_results([row]) if target.limit_from]

    assert verdicts(_row(1, 15.2, 13.3)) == [(13.3, False), (12.8, False)]
    assert verdicts(_row(1, 13.3, 13.3)) == [(13.3, True), (12.8, True)]
    assert verdicts(_row(1, 15.2)) == [(None, False), (None, False)]  # no naive figure: never assumed met
