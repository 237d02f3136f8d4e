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
import sys
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

    def start(self) -> None:
        self._http.start()

    def get_host_and_port(self) -> tuple[str, int]:
        return self._address

    def stop(self) -> None:
        self._http.stop()

    def _handle(self, request: Request) -> Response:
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
