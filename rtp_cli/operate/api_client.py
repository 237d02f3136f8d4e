"""A SigV4-signed client for the pipeline's REST API (`AWS_IAM` auth, service `execute-api`).

Every attempt is signed afresh (the signature carries the time); one `requests.Session` per thread keeps
connections alive under concurrency.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

CredentialsProvider = Callable[[], Any]  # -> botocore ReadOnlyCredentials (access_key, secret_key, token)


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_message(self) -> str:
        if isinstance(self.body, dict):
            error = self.body.get("error")
            if isinstance(error, dict):
                return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
            if "message" in self.body:  # API Gateway's own answers: {"message": "..."}
                return str(self.body["message"])
        return str(self.body)[:300]


class ApiClient:
    def __init__(
        self,
        api_url: str,
        region: str,
        credentials: CredentialsProvider,
        timeout: float = 30.0,
    ) -> None:
        self.base = api_url.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> ApiResponse:
        """One signed attempt. Raises requests.RequestException on connection errors and timeouts."""
        url = f"{self.base}{path}"
        all_headers = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        request = AWSRequest(method=method, url=url, data=body or b"", headers=all_headers)
        SigV4Auth(self.credentials(), "execute-api", self.region).add_auth(request)
        response = self._session().request(
            method, url, data=body, headers=dict(request.headers.items()), timeout=self.timeout
        )
        try:
            parsed: Any = response.json()
        except ValueError:
            parsed = response.text
        return ApiResponse(response.status_code, parsed, dict(response.headers))

    def post_records(self, body: bytes, idempotency_key: str | None = None) -> ApiResponse:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/records", body, headers)

    def get_record(self, record_id: str) -> ApiResponse:
        return self.request("GET", f"/records/{quote(record_id, safe='')}")

    def get_batch(self, batch_id: str) -> ApiResponse:
        return self.request("GET", f"/batches/{quote(batch_id, safe='')}")


def encode(value: Any) -> bytes:
    """The one JSON encoding used for request bodies: compact and deterministic, so a resent batch is
    byte-identical (its Idempotency-Key then replays instead of being refused as reused)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
