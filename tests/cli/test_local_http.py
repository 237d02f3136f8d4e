"""The local API's HTTP/1.1 layer over raw sockets: framing, keep-alive hygiene, capacity.

The API here is the real `LocalApi` on the synthesized `local` template (routes, SigV4, gateway
responses); only the Lambda functions are replaced by an in-process fake that records the events it gets.
Before the h11 server, these cases gave: `Content-Length: abc` 500, `-1` no answer until the client gave
up, a second different `Content-Length` silently ignored, a chunked body 403 and then an HTML "HTTP/0.9"
400 on the same connection, and 21-84 connection resets out of 120 simultaneous POSTs.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from rtp_cli.local.functions import Invocation
from rtp_cli.local.gateway import API_GATEWAY_MAX_PAYLOAD, LocalApi
from rtp_cli.local.resources import _register_non_created
from rtp_cli.local.template import ACCOUNT_ID, Template

KEY, SECRET, REGION = "AKIALOCALHTTPTEST001", "local-http-secret", "us-east-1"
BODY = b'{"records":[{"type":"probe","data":{"n":1}}]}'


class FakeFunctions:
    """Stands in for the worker processes: records events, answers 202 with what it received."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Invocation:
        with self.lock:
            self.events.append(event)
        if self.delay:
            time.sleep(self.delay)
        body = json.dumps({"received": event["body"], "headers": sorted(event["headers"] or {})})
        return Invocation("req", True, result={"statusCode": 202, "body": body})


class NoLogs:
    def emit(self, group: str, stream: str, message: str, label: str = "") -> None:
        pass


class Served:
    def __init__(self, api: LocalApi, functions: FakeFunctions) -> None:
        self.api = api
        self.functions = functions
        self.port = api.port
        self.stage = api.model.stage

    def head(self, method: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> list[str]:
        """Signed header lines for a request (botocore SigV4, as a real client signs)."""
        url = f"http://127.0.0.1:{self.port}/{self.stage}/{path}"
        request = AWSRequest(
            method=method, url=url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
        )
        SigV4Auth(Credentials(KEY, SECRET), "execute-api", REGION).add_auth(request)
        lines = [f"{method} /{self.stage}/{path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        skip = ("content-length", "host")
        lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in skip]
        return lines

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def _wire(lines: list[str], body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response off the socket (Content-Length framed, as the server always sends)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {bytes(buffer)!r}")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    buffer[:] = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


def _rest_until_close(sock: socket.socket, buffer: bytearray) -> bytes:
    """Everything the server still sends until it closes (must be nothing after a refusal)."""
    data = bytes(buffer)
    sock.settimeout(5)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def _exchange(served: Served, raw: bytes) -> tuple[int, dict[str, str], dict[str, Any], bytes, float]:
    """Send raw bytes, read one answer, then everything until the server closes."""
    started = time.monotonic()
    with served.connect() as sock:
        sock.sendall(raw)
        buffer = bytearray()
        status, headers, body = _read_response(sock, buffer)
        after = _rest_until_close(sock, buffer)
    return status, headers, json.loads(body), after, time.monotonic() - started


@pytest.fixture(scope="module")
def local_template(templates: Any) -> Template:
    """The synthesized template with local physical ids, as after `provision` (log groups only: the
    API model needs nothing else that the emulation creates)."""
    template = Template(copy.deepcopy(templates["local"]), Path("/nonexistent/t.json"), "rtp-local", REGION)
    for logical_id in template.of_type("AWS::Logs::LogGroup"):
        template.refs[logical_id] = logical_id
        template.attrs[(logical_id, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{logical_id}:*"
    _register_non_created(template)
    return template


def _serve(template: Template, functions: FakeFunctions, **bounds: Any) -> Iterator[Served]:
    api = LocalApi(template, functions, NoLogs(), access_key=KEY, secret_key=SECRET)  # type: ignore[arg-type]
    for name, value in bounds.items():
        setattr(api.server, name, value)
    if "max_in_flight" in bounds:
        api.server._in_flight = threading.BoundedSemaphore(bounds["max_in_flight"])
    if "max_connections" in bounds:
        api.server._connection_slots = threading.BoundedSemaphore(bounds["max_connections"])
    api.start()
    try:
        yield Served(api, functions)
    finally:
        api.stop()


@pytest.fixture
def served(local_template: Template) -> Iterator[Served]:
    yield from _serve(local_template, FakeFunctions())


def _error_code(document: dict[str, Any]) -> str:
    return str(document["error"]["code"])


# ---- Content-Length -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["Content-Length: abc"], "bad Content-Length"),
        (["Content-Length: -1"], "bad Content-Length"),
        (["Content-Length: 1e3"], "bad Content-Length"),
        ([f"Content-Length: {len(BODY)}", f"Content-Length: {len(BODY)}"], "more than one Content-Length"),
        ([f"Content-Length: {len(BODY)}", "Content-Length: 3"], "conflicting Content-Length"),
        ([f"Content-Length: {len(BODY)}, {len(BODY)}"], "more than one Content-Length"),
        ([f"Content-Length: {len(BODY)}", "Transfer-Encoding: chunked"], "both Content-Length and Transfer"),
    ],
    ids=["abc", "negative", "not-an-integer", "doubled", "conflicting", "comma-list", "with-chunked"],
)
def test_unusable_content_length_is_400_at_once_and_closes(
    served: Served, fields: list[str], reason: str
) -> None:
    status, headers, document, after, elapsed = _exchange(
        served, _wire(served.head("POST", "records", BODY) + fields, BODY)
    )
    assert status == 400
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert _error_code(document) == "CLIENT_ERROR" and reason in document["error"]["message"]
    assert document["error"]["requestId"] == headers["x-amzn-requestid"]
    assert after == b""  # nothing else on the connection, then it is closed
    assert elapsed < 3  # at once: never a wait for bytes that will not come
    assert served.functions.events == []  # nothing reached a function


def test_declared_body_over_the_payload_limit_is_413_without_reading_it(served: Served) -> None:
    lines = [*served.head("POST", "records", BODY), f"Content-Length: {API_GATEWAY_MAX_PAYLOAD + 1}"]
    status, headers, document, after, elapsed = _exchange(served, _wire(lines, b"x" * 1000))
    assert (status, _error_code(document)) == (413, "PAYLOAD_TOO_LARGE")
    assert headers["connection"] == "close" and after == b"" and elapsed < 5


def test_unknown_transfer_coding_is_refused_as_json(served: Served) -> None:
    lines = [*served.head("POST", "records", BODY), "Transfer-Encoding: gzip, chunked"]
    status, _, document, after, _ = _exchange(served, _wire(lines, b"0\r\n\r\n"))
    assert status == 501 and _error_code(document) == "CLIENT_ERROR"
    assert "Transfer-Encoding" in document["error"]["message"] and after == b""


@pytest.mark.parametrize(
    "raw",
    [b"HELLO\r\n\r\n", b"GET /\r\n\r\n", b"POST /v1/records HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"],
    ids=["garbage", "http-0.9", "malformed-field"],
)
def test_malformed_requests_get_a_json_400_never_html(served: Served, raw: bytes) -> None:
    status, headers, document, after, _ = _exchange(served, raw)
    assert status == 400 and headers["content-type"] == "application/json"
    assert _error_code(document) == "CLIENT_ERROR" and after == b""


def test_oversized_head_is_431_as_json(served: Served) -> None:
    lines = [*served.head("GET", "records/x", b""), f"X-Big: {'a' * 20000}"]
    status, _, document, after, _ = _exchange(served, _wire(lines))
    assert status == 431 and _error_code(document) == "CLIENT_ERROR" and after == b""


def test_a_stalled_request_gets_408_and_is_closed(local_template: Template) -> None:
    for served in _serve(local_template, FakeFunctions(), read_timeout=0.5):
        with served.connect() as sock:
            sock.sendall(_wire([*served.head("POST", "records", BODY), f"Content-Length: {len(BODY)}"])[:-2])
            buffer = bytearray()
            status, _, body = _read_response(sock, buffer)
            assert status == 408 and _error_code(json.loads(body)) == "CLIENT_ERROR"
            assert _rest_until_close(sock, buffer) == b""


# ---- chunked bodies and keep-alive --------------------------------------------------------------------
def test_chunked_body_is_decoded_signed_and_the_connection_stays_clean(served: Served) -> None:
    """API Gateway accepts a chunked body and hands the function the decoded body without the
    Transfer-Encoding header; the next request on the same connection is answered normally."""
    lines = [*served.head("POST", "records", BODY), "Transfer-Encoding: chunked"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (BODY[:10], BODY[10:])) + b"0\r\n\r\n"
    with served.connect() as sock:
        sock.sendall(_wire(lines, chunked))
        buffer = bytearray()
        status, headers, body = _read_response(sock, buffer)
        assert status == 202, body
        answer = json.loads(body)
        assert answer["received"] == BODY.decode()
        assert "Transfer-Encoding" not in answer["headers"]
        assert "connection" not in headers  # kept alive
        # The same connection: a second, ordinary request is answered, nothing left over from the first.
        sock.sendall(_wire([*served.head("POST", "records", BODY), f"Content-Length: {len(BODY)}"], BODY))
        status, _, body = _read_response(sock, buffer)
        assert status == 202 and json.loads(body)["received"] == BODY.decode()
        assert buffer == bytearray()


def test_pipelined_requests_are_answered_in_order(served: Served) -> None:
    first = _wire([*served.head("GET", "records/one", b""), "Content-Length: 0"])
    second = _wire([*served.head("GET", "records/two", b""), "Content-Length: 0"])
    with served.connect() as sock:
        sock.sendall(first + second)
        buffer = bytearray()
        answers = [_read_response(sock, buffer) for _ in range(2)]
    assert [status for status, _, _ in answers] == [202, 202]
    assert [event["path"] for event in served.functions.events] == ["/records/one", "/records/two"]


def test_a_refused_request_with_a_read_body_keeps_the_connection(served: Served) -> None:
    """A refusal after the whole request was read (a bad signature) leaves the connection usable."""
    lines = [*served.head("POST", "records", BODY), f"Content-Length: {len(BODY) + 1}"]
    with served.connect() as sock:
        sock.sendall(_wire(lines, BODY + b" "))  # the signature covered another body: 403
        buffer = bytearray()
        status, _, body = _read_response(sock, buffer)
        assert status == 403 and _error_code(json.loads(body)) == "INVALID_SIGNATURE"
        sock.sendall(_wire([*served.head("POST", "records", BODY), f"Content-Length: {len(BODY)}"], BODY))
        assert _read_response(sock, buffer)[0] == 202


def test_function_headers_that_http_cannot_carry_give_502(local_template: Template) -> None:
    class BadHeaders(FakeFunctions):
        def invoke(self, logical_id: str, event: dict[str, Any]) -> Invocation:
            result = {"statusCode": 200, "headers": {"X-Bad": "a\r\nb"}, "body": ""}
            return Invocation("r", True, result=result)

    for served in _serve(local_template, BadHeaders()):
        lines = [*served.head("GET", "records/x", b""), "Content-Length: 0"]
        status, _, document, after, _ = _exchange(served, _wire(lines))
        assert status == 502 and _error_code(document) == "INTERNAL_ERROR" and after == b""


def test_stop_before_start_returns_at_once(local_template: Template) -> None:
    """`rtp deploy --transform nosuch:fn` hung 90 s: the failed start stopped an API never started."""
    api = LocalApi(local_template, FakeFunctions(), NoLogs(), access_key=KEY, secret_key=SECRET)  # type: ignore[arg-type]
    started = time.monotonic()
    api.stop()
    api.stop()
    assert time.monotonic() - started < 1


# ---- capacity -----------------------------------------------------------------------------------------
def _burst(served: Served, count: int) -> tuple[Counter[Any], list[str]]:
    barrier = threading.Barrier(count)
    outcomes: Counter[Any] = Counter()
    problems: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        body = json.dumps({"records": [{"type": "burst", "data": {"i": index}}]}).encode()
        raw = _wire([*served.head("POST", "records", body), f"Content-Length: {len(body)}"], body)
        barrier.wait()
        try:
            with served.connect() as sock:
                sock.settimeout(30)
                sock.sendall(raw)
                status, headers, answer = _read_response(sock, bytearray())
                json.loads(answer)
                if headers.get("content-type") != "application/json":
                    raise ValueError(f"{status} is not JSON")
                outcome: Any = status
        except Exception as error:
            outcome = type(error).__name__
            with lock:
                problems.append(repr(error))
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, problems


def test_120_simultaneous_connections_are_answered_never_reset(local_template: Template) -> None:
    """Bounds far below the load (8 requests in flight, 16 connections served at once, a 0.2 s
    function): every one of 120 simultaneous clients gets a JSON 202 or 429, none is reset."""
    functions = FakeFunctions(delay=0.2)
    for served in _serve(local_template, functions, max_in_flight=8, max_connections=16):
        outcomes, problems = _burst(served, 120)
        assert not problems, problems[:5]
        assert set(outcomes) <= {202, 429}, outcomes
        assert outcomes[202] >= 8 and outcomes[429] > 0, outcomes  # the bound is what refused them
        assert len(functions.events) == outcomes[202]


def test_120_simultaneous_connections_with_the_default_bounds(local_template: Template) -> None:
    functions = FakeFunctions(delay=0.05)
    for served in _serve(local_template, functions):
        outcomes, problems = _burst(served, 120)
        assert not problems, problems[:5]
        assert set(outcomes) <= {202, 429} and outcomes[202] >= 64, outcomes
