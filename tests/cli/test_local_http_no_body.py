"""The local HTTP/1.1 server (rtp_cli/local/http11.py) with answers that never carry content."""

from __future__ import annotations

import http.client

import pytest

from rtp_cli.local.http11 import Http11Server, Request, Response


@pytest.mark.parametrize("status", [204, 304])
def test_a_204_or_304_with_a_body_is_sent_without_it_and_the_connection_lives_on(status: int) -> None:
    """RFC 9110 15.3.5 and 15.4.5: a 204 or 304 ends at its header. A Lambda proxy answer with
    statusCode 204 and a body must not kill the connection (h11 refuses to send the body)."""

    def handle(request: Request) -> Response:
        if request.target == "/empty":
            return Response(status, [("X-Kept", "yes")], b"a body no 204 or 304 may carry")
        return Response(200, [], b"next")

    def refuse(code: int, message: str, _: Request | None) -> Response:
        return Response(code, [], message.encode())

    server = Http11Server("127.0.0.1", 0, handle, refuse, max_body=1024)
    server.start()
    try:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        client.request("GET", "/empty")
        first = client.getresponse()
        assert (first.status, first.getheader("X-Kept"), first.read()) == (status, "yes", b"")
        client.request("GET", "/next")  # the same connection
        second = client.getresponse()
        assert (second.status, second.read()) == (200, b"next")
        client.close()
    finally:
        server.stop()


def test_the_date_header_is_formatted_once_a_second_and_always_names_the_current_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from email.utils import formatdate

    from rtp_cli.local import http11

    for now in (1_790_000_000.0, 1_790_000_000.4, 1_790_000_000.999, 1_790_000_001.0, 1_790_086_400.5, 5.0):
        monkeypatch.setattr(http11.time, "time", lambda now=now: now)
        assert http11.http_date() == formatdate(now, usegmt=True)


@pytest.mark.parametrize(("status", "reason"), [(200, "OK"), (418, "I'm a Teapot"), (599, "")])
def test_an_answer_carries_its_status_phrase_and_a_date(status: int, reason: str) -> None:
    from email.utils import parsedate_to_datetime

    server = Http11Server(
        "127.0.0.1",
        0,
        lambda _: Response(status, [], b"x"),
        lambda c, m, _: Response(c, [], b""),
        max_body=64,
    )
    server.start()
    try:
        client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        client.request("GET", "/")
        answer = client.getresponse()
        assert (answer.status, answer.reason) == (status, reason)
        assert parsedate_to_datetime(answer.getheader("Date", "")).tzname() == "UTC"
        client.close()
    finally:
        server.stop()
