"""The local API's HTTP/1.1 server: h11 (python-hyper's HTTP/1.1 state machine) parses, threads serve.

Why not `http.server`: it trusted `Content-Length` as given (`abc` -> 500, `-1` -> a read until the client
gave up, a second, different value silently ignored), ignored `Transfer-Encoding: chunked` (the unread
body was then parsed as the next request: an HTML "HTTP/0.9" 400 on the same connection), answered
protocol errors in HTML, and listened with a backlog of 5 (120 simultaneous clients: connection resets).

Here, framing is h11's (RFC 9112): a malformed, negative or conflicting `Content-Length`, an unknown
transfer coding or a malformed head is refused with a JSON error and the connection is closed, so nothing
unread is ever taken for a request. On top of h11, a request with more than one `Content-Length` field
(even equal ones, which RFC 9110 8.6 lets a recipient reject) or with both `Content-Length` and
`Transfer-Encoding` (RFC 9112 6.1) is refused too: the framing must be unambiguous. Chunked bodies are
decoded, as API Gateway does (see `rtp_cli.local.gateway`).

Capacity: the listen backlog is `backlog` (the kernel caps it at net.core.somaxconn); at most
`max_connections` connections are served at once (one thread each; more wait in the backlog, they are
not reset), and at most `max_in_flight` requests are being handled at once: a request beyond that is
read completely and answered at once through `refuse(429, ...)` on the same, still usable, connection.
Every connection that is closed after an error is closed gracefully (shut down for writing, then the
rest of what the client sends is read and discarded for a moment), so the client reads the answer
instead of a reset.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

import h11

MAX_HEAD_BYTES = 16 * 1024  # request line and header fields (h11's default bound)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_NO_BODY = frozenset({204, 304})  # answers that never carry content, whatever a handler put in the body
_CONTENT_LENGTH_FIELD = re.compile(rb"(?im)^content-length[ \t]*:([^\r\n]*)")
# Framing and hop-by-hop fields are the server's to set, whatever a function's response says.
_OWN_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)


class Headers:
    """Request header fields in arrival order, names as sent; `get` is case-insensitive (first value)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self._pairs if key.lower() == wanted), default)

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self._pairs if key.lower() == wanted]


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the request target as sent: path and query
    http_version: str  # "1.1" or "1.0"
    headers: Headers
    body: bytes
    client: tuple[str, int]


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    close: bool = False  # close the connection after this answer
    head_length: int | None = None  # a HEAD answer's Content-Length: the length a GET would have


Handler = Callable[[Request], Response]
# (status, message, the request when it was read completely) -> the answer to send
Refuser = Callable[[int, str, Request | None], Response]


class _RefusedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Http11Server:
    def __init__(
        self,
        host: str,
        port: int,
        handle: Handler,
        refuse: Refuser,
        *,
        max_body: int,
        max_connections: int = 256,
        max_in_flight: int = 64,
        backlog: int = 1024,
        idle_timeout: float = 15.0,
        read_timeout: float = 30.0,
        server_name: str = "rtp-local",
    ) -> None:
        self.handle = handle
        self.refuse = refuse
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.idle_timeout = idle_timeout
        self.read_timeout = read_timeout
        self.server_name = server_name
        self._listener = socket.create_server((host, port), backlog=backlog)
        self._listener.settimeout(0.2)  # the accept loop notices stop() within this
        self.port = int(self._listener.getsockname()[1])
        self._connection_slots = threading.BoundedSemaphore(max_connections)
        self._in_flight = threading.BoundedSemaphore(max_in_flight)
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="rtp-local-api", daemon=True)

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._running.set()
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting and close every open connection. Safe before start() and more than once."""
        self._running.clear()
        with contextlib.suppress(OSError):  # wakes a blocked accept() now (Linux), not at its 0.2 s timeout
            self._listener.shutdown(socket.SHUT_RDWR)
        if self._acceptor.is_alive():
            self._acceptor.join(timeout=5)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # ---- accepting -----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while self._running.is_set():
            # At max_connections this waits: further clients stay in the listen backlog, not reset.
            if not self._connection_slots.acquire(timeout=0.2):
                continue
            try:
                connection, address = self._listener.accept()
            except TimeoutError:
                self._connection_slots.release()
                continue
            except OSError:
                self._connection_slots.release()
                if not self._running.is_set():
                    return
                time.sleep(0.05)  # e.g. EMFILE: give the open connections a moment to finish
                continue
            with self._lock:
                self._open.add(connection)
            threading.Thread(
                target=self._serve, args=(connection, address), name="rtp-local-conn", daemon=True
            ).start()

    def _serve(self, connection: socket.socket, address: tuple[str, int]) -> None:
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Connection(self, connection, (str(address[0]), int(address[1]))).run()
        except OSError:
            pass  # the client went away
        finally:
            with self._lock:
                self._open.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()
            self._connection_slots.release()

    # ---- answers -------------------------------------------------------------------------------
    def answer(self, request: Request) -> Response:
        if not self._in_flight.acquire(blocking=False):
            return self.refuse(
                429,
                f"Too Many Requests: the local API handles at most {self.max_in_flight} requests at once; "
                "retry with backoff",
                request,
            )
        try:
            return self.handle(request)
        except Exception as error:  # a bug in the handler: answer, do not drop the connection
            return self.refuse(500, f"Internal server error: {type(error).__name__}", request)
        finally:
            self._in_flight.release()


_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """`formatdate(usegmt=True)`: the Date header, which names a whole second, formatted once a second
    instead of once per answer (about 3 us each)."""
    global _date
    second = int(time.time())
    cached = _date
    if cached[0] != second:
        cached = _date = (second, formatdate(second, usegmt=True))
    return cached[1]


class _Connection:
    """One client connection: requests in sequence (keep-alive, pipelining) until either side closes."""

    def __init__(self, server: Http11Server, sock: socket.socket, client: tuple[str, int]) -> None:
        self.server = server
        self.sock = sock
        self.client = client
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    def run(self) -> None:
        while True:
            try:
                request = self._read_request()
            except _RefusedError as refused:
                self._send(self.server.refuse(refused.status, refused.message, None), close=True)
                return
            if request is None:
                return  # the client closed, or stayed idle past the keep-alive timeout
            response = self.server.answer(request)
            if not self._send(response, close=response.close, head=request.method == "HEAD"):
                return
            if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is not h11.DONE:
                self._close_gracefully()
                return
            try:
                self.h11.start_next_cycle()
            except h11.LocalProtocolError:
                self._close_gracefully()
                return

    # ---- reading -------------------------------------------------------------------------------
    def _read_request(self) -> Request | None:
        """The next complete request, None at a clean end of the connection; _RefusedError when the request
        cannot be framed or is over a limit."""
        raw_head = bytearray(self.h11.trailing_data[0])
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                raise _RefusedError(error.error_status_hint, f"Bad Request: {error}") from None
            if event is h11.NEED_DATA:
                started = head is not None or bool(raw_head)
                data = self._receive(started)
                if data is None:  # idle keep-alive connection timed out
                    return None
                if head is None and len(raw_head) <= MAX_HEAD_BYTES:
                    raw_head += data
                self.h11.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                self._check_framing(event, bytes(raw_head))
                if self.h11.they_are_waiting_for_100_continue:
                    self.sock.sendall(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.server.max_body:
                    raise _RefusedError(413, "Request Too Long")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return Request(
                    method=head.method.decode("ascii"),
                    target=head.target.decode("latin-1"),
                    http_version=head.http_version.decode("ascii"),
                    headers=Headers(
                        [(n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers.raw_items()]
                    ),
                    body=bytes(body),
                    client=self.client,
                )
            elif isinstance(event, h11.ConnectionClosed):
                if head is not None:
                    raise _RefusedError(400, "Bad Request: the connection closed mid-request")
                return None
            else:  # PAUSED cannot happen while a request is being read
                raise _RefusedError(400, f"Bad Request: unexpected {type(event).__name__}")

    def _check_framing(self, event: h11.Request, raw: bytes) -> None:
        end = _HEAD_END.search(raw)
        if end is None or end.start() > MAX_HEAD_BYTES:  # h11 bounds only a head that arrives in parts
            raise _RefusedError(431, "Request Header Fields Too Large")
        fields = _CONTENT_LENGTH_FIELD.findall(raw[: end.start()])
        if len(fields) > 1 or any(b"," in value for value in fields):
            raise _RefusedError(400, "Bad Request: more than one Content-Length")
        names = {name.lower() for name, _ in event.headers}
        if b"content-length" in names and b"transfer-encoding" in names:
            raise _RefusedError(400, "Bad Request: both Content-Length and Transfer-Encoding")
        declared = next((value for name, value in event.headers if name == b"content-length"), None)
        if declared is not None and int(declared) > self.server.max_body:
            raise _RefusedError(413, "Request Too Long")

    def _receive(self, mid_request: bool) -> bytes | None:
        self.sock.settimeout(self.server.read_timeout if mid_request else self.server.idle_timeout)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            if mid_request:
                raise _RefusedError(408, "Request Timeout: the request was not complete in time") from None
            return None
        except ConnectionResetError:
            return b""

    # ---- writing -------------------------------------------------------------------------------
    def _send(self, response: Response, close: bool, head: bool = False) -> bool:
        """Send one answer; False when the connection is gone or was closed after it."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self._close_gracefully()
            return False
        try:
            start = self._start_line(response, close, head)
        except (h11.LocalProtocolError, UnicodeEncodeError) as error:
            # A function answered a header HTTP/1.1 cannot carry; API Gateway answers 502 then.
            response, close = self.server.refuse(502, f"Malformed Lambda proxy response: {error}", None), True
            start = self._start_line(response, close)
        try:
            # One write per answer: each socket call lets another thread take the GIL, and this one then
            # waits for it back (up to the 5 ms switch interval) before the next.
            answer = self.h11.send(start) or b""
            if response.body and not head and response.status not in _NO_BODY:
                answer += self.h11.send(h11.Data(data=response.body)) or b""
            self.sock.sendall(answer + (self.h11.send(h11.EndOfMessage()) or b""))
        except OSError:
            return False
        if close:
            self._close_gracefully()
            return False
        return True

    def _start_line(self, response: Response, close: bool, head: bool = False) -> h11.Response:
        headers = [(name, value) for name, value in response.headers if name.lower() not in _OWN_HEADERS]
        length = response.head_length if head and response.head_length is not None else len(response.body)
        if response.status in _NO_BODY:  # RFC 9110 15.3.5, 15.4.5: a 204 or 304 ends at its header
            length = 0
        headers += [
            ("Date", http_date()),
            ("Server", self.server.server_name),
            ("Content-Length", str(length)),
        ]
        if close:
            headers.append(("Connection", "close"))
        phrase = _PHRASES.get(response.status, "")
        return h11.Response(
            status_code=response.status,
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers],
            reason=phrase.encode("ascii"),
        )

    def _close_gracefully(self, linger: float = 2.0, limit: int = 32 * 1024 * 1024) -> None:
        """Half-close, then read and discard what the client still sends: closing a socket with unread
        input makes the kernel send a reset, which can destroy the answer before the client reads it."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + linger
        drained = 0
        try:
            while drained < limit and (remaining := deadline - time.monotonic()) > 0:
                self.sock.settimeout(remaining)
                data = self.sock.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass
