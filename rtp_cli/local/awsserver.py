"""The emulation's AWS endpoint: moto's own WSGI application, served over HTTP/1.1 with keep-alive.

moto's `ThreadedMotoServer` serves through werkzeug's development server, which closes the connection
after every response (werkzeug.serving: "Always close the connection. This disables HTTP/1.1 keep-alive
connections"). Every AWS call of the local pipeline (the handlers' boto3 clients, the event source
mapping's pollers, the log shipper) then paid for a new TCP connection on both sides and a new server
thread: measured, about half of the CPU of a small DynamoDB call. AWS endpoints keep connections
alive, and botocore pools them; here the same application (`DomainDispatcherApplication` over
`create_backend_app`, as `ThreadedMotoServer` builds it) is served by the local API's HTTP/1.1 server
(`rtp_cli.local.http11`: h11 framing, one thread per connection, keep-alive), with the WSGI environ
built by moto's own request handler (`MotoRequestHandler.make_environ`, werkzeug's plus moto's
underscore-header handling), so moto sees exactly the requests it saw before.

tests/test_moto_guards.py fails by name if a moto or werkzeug upgrade changes what this relies on:
`DomainDispatcherApplication`, `create_backend_app`, `MotoRequestHandler.make_environ` reading only the
handler attributes set here, and the connection being reused.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import sys
import threading
import time
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

from rtp_cli.local.http11 import Http11Server, Request, Response

# moto's largest bodies locally are S3 objects (a batch's raw records): far below this.
MAX_AWS_BODY = 5 * 1024 * 1024 * 1024
IDLE_SECONDS = 120.0  # botocore keeps idle pooled connections; a closed one is retried transparently


_SCOPE_SERVICE = re.compile(r"Credential=[^/,]*/[^/,]*/[^/,]*/([^/,]+)/")
MAX_OPERATIONS = 512  # distinct operation names kept in CallStats (names come from clients)


def operation_name(request: Request) -> str:
    """`service:Action` for a request: the service from the signature's credential scope, the action from
    `X-Amz-Target` (JSON protocols) or, for REST APIs (S3), the method."""
    scope = _SCOPE_SERVICE.search(request.headers.get("authorization") or "")
    service = scope.group(1) if scope else "unsigned"
    target = request.headers.get("x-amz-target")
    return f"{service}:{target.rsplit('.', 1)[-1] if target else request.method}"


class CallStats:
    """Per AWS operation: calls, CPU seconds the emulation spent answering them (the answering thread's
    CPU time: no waiting counted) and request bytes. `rtp deploy --env local` serves it at
    `/_rtp/aws-calls`; bench/local_end_to_end.py prints it per record, so that a change to the handlers'
    call pattern or to the emulation shows where the local CPU goes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, list[float]] = {}

    def add(self, operation: str, cpu_seconds: float, request_bytes: int) -> None:
        with self._lock:
            entry = self._calls.get(operation)
            if entry is None:
                if len(self._calls) >= MAX_OPERATIONS:
                    operation = "(other)"
                entry = self._calls.setdefault(operation, [0, 0.0, 0])
            entry[0] += 1
            entry[1] += cpu_seconds
            entry[2] += request_bytes

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {
                operation: {"calls": calls, "cpu_seconds": round(cpu, 6), "request_bytes": size}
                for operation, (calls, cpu, size) in sorted(self._calls.items())
            }


class _Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, with the backend of each host name remembered: moto works it out per request by
    listing its package directory (`backends.list_of_moto_modules`, a listdir and an isdir per entry) and
    matching some hundred URL patterns, a pure function of the host name."""

    def __init__(self) -> None:
        super().__init__(create_backend_app)
        self._backend_of: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        try:
            return self._backend_of[host]
        except KeyError:
            backend = super().get_backend_for_host(host)
            if len(self._backend_of) < 4096:  # bounded: host names come from clients
                self._backend_of[host] = backend
            return backend


class _ServerShim:
    """What werkzeug's `make_environ` reads of its server."""

    multithread = True
    multiprocess = False
    ssl_context = None

    def __init__(self, address: tuple[str, int]) -> None:
        self.server_address = address

    def log(self, *_: Any) -> None:  # only for TLS peer certificates, which plain sockets do not have
        return None


def wsgi_environ(request: Request, server_address: tuple[str, int]) -> dict[str, Any]:
    """The environ werkzeug's development server with moto's handler builds for this request."""
    handler = MotoRequestHandler.__new__(MotoRequestHandler)
    headers = http.client.HTTPMessage()  # what http.server parses a head into
    for name, value in request.headers.items():
        headers[name] = value
    handler.headers = headers
    handler.path = request.target
    handler.command = request.method
    handler.request_version = f"HTTP/{request.http_version}"
    handler.rfile = io.BytesIO(request.body)
    handler.connection = None
    handler.client_address = request.client
    handler.server = _ServerShim(server_address)  # type: ignore[assignment]
    environ: dict[str, Any] = handler.make_environ()
    if environ.get("wsgi.input_terminated"):
        # A chunked request: werkzeug wraps the input to undo the chunking, which h11 has already undone.
        # The body as it arrived is what moto read from werkzeug's server (read to its end).
        environ["wsgi.input"] = io.BytesIO(request.body)
    environ["wsgi.errors"] = sys.stderr
    return environ


class MotoHttpServer:
    """`ThreadedMotoServer`'s interface (start, get_host_and_port, stop) over a keep-alive server."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        self._app = _Dispatcher()
        self._http = Http11Server(
            ip_address,
            port,
            self._handle,
            self._refuse,
            max_body=MAX_AWS_BODY,
            max_connections=4096,
            max_in_flight=4096,
            idle_timeout=IDLE_SECONDS,
            read_timeout=60.0,
            server_name="amazon.com",
        )
        self._address = (ip_address, self._http.port)
        self.calls = CallStats()

    def start(self) -> None:
        self._http.start()

    def get_host_and_port(self) -> tuple[str, int]:
        return self._address

    def stop(self) -> None:
        self._http.stop()

    def _handle(self, request: Request) -> Response:
        started = time.thread_time()
        try:
            return self._answer(request)
        finally:
            self.calls.add(operation_name(request), time.thread_time() - started, len(request.body))

    def _answer(self, request: Request) -> Response:
        environ = wsgi_environ(request, self._address)
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return lambda data: answer.setdefault("written", []).append(data)

        chunks = self._app(environ, start_response)
        try:
            body = b"".join([*answer.get("written", []), *chunks])
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        headers = list(answer["headers"])
        declared = next((v for k, v in headers if k.lower() == "content-length"), None)
        return Response(
            status=int(str(answer["status"]).split(" ", 1)[0]),
            headers=headers,
            body=body,
            head_length=int(declared) if request.method == "HEAD" and declared is not None else None,
        )

    @staticmethod
    def _refuse(status: int, message: str, request: Request | None) -> Response:
        body = json.dumps({"message": message}).encode()
        return Response(status, [("Content-Type", "application/json")], body, close=status >= 500)
