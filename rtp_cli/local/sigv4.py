"""Verify AWS Signature Version 4 on an incoming request, as API Gateway does for `AWS_IAM` methods.

The canonical request is rebuilt with botocore's own SigV4 implementation (restricted to the headers the
client says it signed), so any standard client (botocore, the AWS CLI, `curl --aws-sigv4`) verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

MAX_CLOCK_SKEW = timedelta(minutes=5)
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class AuthFailure:
    response_type: str  # the API Gateway gateway-response type
    error_type: str  # x-amzn-ErrorType
    message: str


@dataclass(frozen=True)
class Caller:
    access_key: str


class _Verifier(SigV4Auth):
    def __init__(self, credentials: Credentials, service: str, region: str, signed: list[str]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def payload(self, request: AWSRequest) -> str:
        # The hash of the body actually received, never a value the client states: API Gateway signs
        # over the real payload, so a signature cannot be reused for another body.
        body = request.body or b""
        return hashlib.sha256(body if isinstance(body, bytes) else str(body).encode()).hexdigest()

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                header_map[name] = value
        return header_map


def _parse_authorization(value: str) -> dict[str, str] | None:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, item = part.strip().partition("=")
        if sep:
            fields[key.strip()] = item.strip()
    return fields


def verify(
    method: str,
    url: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str = "execute-api",
    now: datetime | None = None,
) -> Caller | AuthFailure:
    lookup: dict[str, str] = {}
    for name, value in headers:
        lookup.setdefault(name.lower(), value)
    authorization = lookup.get("authorization")
    if not authorization:
        return AuthFailure(
            "MISSING_AUTHENTICATION_TOKEN",
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    fields = _parse_authorization(authorization)
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields or k not in fields]
    if fields is None or missing:
        return AuthFailure(
            "DEFAULT_4XX",
            "IncompleteSignatureException",
            " ".join(f"Authorization header requires '{k}' parameter." for k in missing or ["Credential"])
            + f" Authorization={authorization.split(' ')[0]}",
        )
    credential = fields["Credential"].split("/")
    if len(credential) != 5 or credential[4] != "aws4_request":
        return AuthFailure(
            "DEFAULT_4XX", "IncompleteSignatureException", f"Credential is malformed: {fields['Credential']}"
        )
    key_id, day, scope_region, scope_service, _ = credential
    if "x-amz-security-token" in lookup or key_id != access_key:
        return AuthFailure(
            "DEFAULT_4XX",
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    if scope_service != service:
        return AuthFailure(
            "DEFAULT_4XX",
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
        )
    if scope_region != region:
        return AuthFailure(
            "DEFAULT_4XX",
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scope_region}'.",
        )
    stamp = _timestamp(lookup)
    if stamp is None:
        return AuthFailure(
            "DEFAULT_4XX",
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    current = now or datetime.now(UTC)
    if abs(current - stamp) > MAX_CLOCK_SKEW:
        earlier = stamp < current
        bound = current - MAX_CLOCK_SKEW if earlier else current + MAX_CLOCK_SKEW
        relation = "earlier" if earlier else "later"
        sign = "-" if earlier else "+"
        return AuthFailure(
            "INVALID_SIGNATURE",
            "InvalidSignatureException",
            f"Signature expired: {stamp:{SIGV4_TIMESTAMP}} is now {relation} than {bound:{SIGV4_TIMESTAMP}} "
            f"({current:{SIGV4_TIMESTAMP}} {sign} 5 min.)",
        )
    if day != f"{stamp:%Y%m%d}":
        return AuthFailure(
            "INVALID_SIGNATURE",
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP",
        )
    signed = [name.strip().lower() for name in fields["SignedHeaders"].split(";") if name.strip()]
    if "host" not in signed:
        return AuthFailure(
            "INVALID_SIGNATURE",
            "InvalidSignatureException",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        if name.lower() in signed:
            request.headers.add_header(name.lower(), value)
    if "x-amz-content-sha256" in request.headers:
        # botocore takes a stated content hash as the payload hash; state the real one instead, so a
        # signature over another body (or over UNSIGNED-PAYLOAD) no longer matches.
        request.headers.replace_header("x-amz-content-sha256", hashlib.sha256(body).hexdigest())
    request.context["timestamp"] = f"{stamp:{SIGV4_TIMESTAMP}}"
    verifier = _Verifier(Credentials(access_key, secret_key), scope_service, scope_region, signed)
    canonical = verifier.canonical_request(request)
    expected = verifier.signature(verifier.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, fields["Signature"]):
        return AuthFailure(
            "INVALID_SIGNATURE",
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return Caller(access_key=key_id)


def _timestamp(lookup: dict[str, Any]) -> datetime | None:
    value = lookup.get("x-amz-date")
    if value:
        try:
            return datetime.strptime(value, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            return None
    value = lookup.get("date")
    if value:
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            return None
    return None
