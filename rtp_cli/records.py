"""`rtp records --status REJECTED --since 1h`: the REJECTED records of a time window, newest first.

The service (`list_records`) reads the API's GET /records?status=REJECTED route with SigV4, as `rtp show`
reads GET /records/{id}: the same route readers use, in every environment (`local` serves it from the
template). It follows the route's continuation tokens until it has `limit` rows or the window ends; the
server checks every parameter and its refusal is shown as it is written (exit 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

import typer

from rtp_cli.errors import fail
from rtp_cli.options import EnvOption, ProfileOption, SinceOption, UntilOption

MAX_PAGE = 1000  # the route's largest `limit`
MAX_REQUESTS = 10_000  # a window of 400 days is at most 200 requests (48 hours each): a bound, not a limit


class Response(Protocol):  # rtp_cli.operate.api_client.ApiResponse
    @property
    def status(self) -> int: ...

    @property
    def body(self) -> Any: ...

    @property
    def ok(self) -> bool: ...

    def error_message(self) -> str: ...


Fetch = Callable[[str], Response]  # path and query string -> the API's answer


class RecordsError(Exception):
    """The listing could not be read: `message` says why; `exit_code` 2 (usage, credentials) or 1."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


@dataclass
class Listing:
    rows: list[dict[str, Any]] = field(default_factory=list)
    more: bool = False  # the window holds more rows than `limit`
    since: str = ""
    until: str = ""
    requests: int = 0


def list_records(
    fetch: Fetch,
    status: str,
    since: str,
    until: str | None = None,
    limit: int = 100,
    order: str = "newest",
) -> Listing:
    """Up to `limit` records of `status` processed in [since, until], following continuation tokens."""
    if limit < 1:
        raise RecordsError("--limit: at least 1")
    listing = Listing()
    params = {"status": status, "since": since, "order": order}
    if until:
        params["until"] = until
    token: str | None = None
    while listing.requests < MAX_REQUESTS:
        page_limit = min(limit - len(listing.rows), MAX_PAGE)
        query = {**params, "limit": str(page_limit), **({"next": token} if token else {})}
        response = fetch("/records?" + urlencode(query))
        listing.requests += 1
        if not response.ok or not isinstance(response.body, dict):
            raise _refusal(response)
        body = response.body
        listing.since, listing.until = str(body.get("since", "")), str(body.get("until", ""))
        listing.rows.extend(row for row in body.get("records", []) if isinstance(row, dict))
        token = body.get("next")
        if not token:
            return listing
        if len(listing.rows) >= limit:
            listing.more = True
            return listing
    raise RecordsError(f"the listing did not end after {MAX_REQUESTS} requests", 1)


def _refusal(response: Response) -> RecordsError:
    message = response.error_message()
    if response.status == 400:
        return RecordsError(message)  # a parameter the route refused: it says which and why
    if response.status in (401, 403):
        return RecordsError(
            f"not allowed to read records ({response.status}: {message}); the caller needs "
            "the stack's ReaderPolicy (execute-api:Invoke on GET /records)"
        )
    return RecordsError(f"GET /records answered {response.status}: {message}", 1)


def rows_as_json_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False, separators=(",", ":"))


# --- the command -------------------------------------------------------------------------------------


def records(
    status: Annotated[
        str, typer.Option("--status", help="REJECTED (the one status indexed: PROCESSED records are not).")
    ],
    since: SinceOption,
    env: EnvOption = "local",
    until: UntilOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many records.")] = 100,
    oldest_first: Annotated[
        bool, typer.Option("--oldest-first", help="Oldest first (default: newest).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    profile: ProfileOption = None,
) -> None:
    """List the records of one status processed in a time window (GET /records?status=REJECTED)."""
    from rich.table import Table

    from rtp_cli.console import console, escape
    from rtp_cli.operate.api_client import ApiClient
    from rtp_cli.target import ConfigError, TargetError, resolve_target

    try:
        target = resolve_target(env, profile)
    except (ConfigError, TargetError) as error:
        fail(str(error))
    client = ApiClient(target.api_url, target.region, target.credentials)
    try:
        listing = list_records(
            lambda path: client.request("GET", path),
            status,
            since,
            until,
            limit,
            "oldest" if oldest_first else "newest",
        )
    except RecordsError as error:
        fail(error.message, error.exit_code)
    except OSError as error:  # requests' connection errors and timeouts are OSErrors
        fail(f"cannot reach the {env} API at {target.api_url}: {error}")
    if as_json:
        for line in rows_as_json_lines(listing.rows):
            print(line)
        return
    table = Table(title=f"{status} records in {env}, {listing.since} to {listing.until}")
    for column in ("record id", "batch", "type", "processedAt", "reason"):
        table.add_column(column, overflow="fold")
    for row in listing.rows:
        table.add_row(
            *(
                escape(str(row.get(name, "")))
                for name in ("recordId", "batchId", "type", "processedAt", "reason")
            )
        )
    console.print(table)
    more = f"; more in the window: raise --limit (now {limit}) or narrow it" if listing.more else ""
    console.print(f"{len(listing.rows)} record(s){more}", highlight=False)
