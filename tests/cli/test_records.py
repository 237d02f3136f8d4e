"""`rtp records`: the service that pages GET /records?status=REJECTED, without a terminal or a server.

The route itself (paging, tokens, refusals) is tested in tests/handlers/test_rejected_listing.py, and the
command end to end against the local runtime in tests/operate/test_records_e2e.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rtp_cli.operate.api_client import ApiResponse
from rtp_cli.records import MAX_PAGE, RecordsError, list_records, rows_as_json_lines


@dataclass
class FakeRoute:
    """Serves `rows` in pages of at most `limit` (and never more than `page` rows, like a server whose
    request ran out of hours), with the index of the next row as its token."""

    rows: list[dict[str, Any]]
    page: int = 1000
    asked: list[dict[str, str]] | None = None

    def __call__(self, path: str) -> ApiResponse:
        parts = urlsplit(path)
        assert parts.path == "/records"
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        self.asked = [*(self.asked or []), query]
        start = int(query.get("next", "0"))
        count = min(int(query["limit"]), self.page)
        end = min(start + count, len(self.rows))
        body = {
            "since": "S",
            "until": "U",
            "records": self.rows[start:end],
            "next": str(end) if end < len(self.rows) else None,
        }
        return ApiResponse(200, body, {})


ROWS = [
    {"recordId": f"r-{n}", "batchId": "B", "type": "t", "processedAt": "T", "reason": "why"}
    for n in range(25)
]


def test_follows_tokens_until_the_window_ends() -> None:
    route = FakeRoute(ROWS, page=7)
    listing = list_records(route, "REJECTED", "1h", limit=100)
    assert listing.rows == ROWS and not listing.more
    assert listing.requests == 4 and (listing.since, listing.until) == ("S", "U")
    assert route.asked is not None
    assert route.asked[0] == {"status": "REJECTED", "since": "1h", "order": "newest", "limit": "100"}
    assert [query.get("next") for query in route.asked] == [None, "7", "14", "21"]


def test_stops_at_the_limit_and_says_there_is_more() -> None:
    route = FakeRoute(ROWS)
    listing = list_records(route, "REJECTED", "1h", until="2026-11-28T12:00:00Z", limit=10, order="oldest")
    assert listing.rows == ROWS[:10] and listing.more and listing.requests == 1
    assert route.asked is not None
    assert route.asked[0]["until"] == "2026-11-28T12:00:00Z" and route.asked[0]["order"] == "oldest"


def test_asks_for_no_more_than_the_route_serves_per_page() -> None:
    route = FakeRoute(ROWS * 100)
    listing = list_records(route, "REJECTED", "1h", limit=2400)
    assert len(listing.rows) == 2400 and listing.more
    assert route.asked is not None
    assert [int(query["limit"]) for query in route.asked] == [MAX_PAGE, MAX_PAGE, 400]


def test_empty_pages_with_a_token_are_followed() -> None:
    answers = iter(
        [
            ApiResponse(200, {"records": [], "next": "a"}, {}),
            ApiResponse(200, {"records": [], "next": "b"}, {}),
            ApiResponse(200, {"records": ROWS[:1], "next": None}, {}),
        ]
    )
    listing = list_records(lambda _: next(answers), "REJECTED", "30d")
    assert listing.rows == ROWS[:1] and listing.requests == 3


@pytest.mark.parametrize(
    ("response", "code", "words"),
    [
        (
            ApiResponse(
                400, {"error": {"code": "BAD_REQUEST", "message": "status: not indexed, by design"}}, {}
            ),
            2,
            "BAD_REQUEST: status: not indexed, by design",
        ),
        (ApiResponse(403, {"message": "Missing Authentication Token"}, {}), 2, "ReaderPolicy"),
        (ApiResponse(500, {"error": {"code": "INTERNAL_ERROR", "message": "retry"}}, {}), 1, "answered 500"),
        (ApiResponse(200, "not json", {}), 1, "answered 200"),
    ],
)
def test_refusals_become_errors_with_exit_codes(response: ApiResponse, code: int, words: str) -> None:
    with pytest.raises(RecordsError) as refused:
        list_records(lambda _: response, "PROCESSED", "1h")
    assert refused.value.exit_code == code and words in refused.value.message


def test_json_lines_are_one_object_per_row() -> None:
    lines = list(rows_as_json_lines(ROWS[:2]))
    assert len(lines) == 2 and lines[0].startswith('{"recordId":"r-0"')
