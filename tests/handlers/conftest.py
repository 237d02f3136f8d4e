"""Fixtures for the handler tests: moto in-process, the stack's resources built from the `local` template.

Every handler test also checks its own AWS calls against the calling function's IAM policy in the
template (`_iam_guard`): a handler that starts calling something its role lacks fails the test that
exercises it, not only tests/handlers/test_iam_usage.py.
"""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rtp_cli.local import iam
from rtp_cli.local.emulation import MotoState
from rtp_cli.local.inprocess import (
    ELSEWHERE,
    LAMBDA_ENVIRONMENT,
    CallRecorder,
    Pipeline,
    Resolver,
    lambda_session,
    moto_session,
    provision_template,
)

TEMPLATE_ENV = "local"

_ENVIRONMENT = LAMBDA_ENVIRONMENT


@pytest.fixture(autouse=True)
def _lambda_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per test, so nothing leaks into the rest of the suite."""
    for name, value in _ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    for name in ELSEWHERE:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def local_template(cached_templates: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return cached_templates[TEMPLATE_ENV]


@pytest.fixture(scope="session")
def recorder() -> CallRecorder:
    """Every AWS call any handler made in this session, attributed to its function."""
    return CallRecorder()


@pytest.fixture(scope="session")
def aws_session(recorder: CallRecorder) -> boto3.Session:
    """One boto3 session for the whole run (its loaded service models make new clients cheap), made where
    the developer's AWS config cannot reach it (`lambda_session`)."""
    session = lambda_session()
    recorder.attach(session)
    return session


class _HarnessClients:
    """The session as the harness's own provisioning and inspection see it: one client per service for the
    whole run (a botocore client costs ~15 ms to make, and the harness made seven per test). moto answers
    a client made before its `mock_aws()` too, with the fresh account of the test running. The functions'
    clients (`boto3.client()` in rtp_pipeline.aws) stay fresh per test: tests inject faults into those."""

    def __init__(self, session: boto3.Session) -> None:
        self._session = session
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._session.client(service)  # type: ignore[call-overload]
        return self._clients[service]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.fixture(scope="session")
def harness_session(aws_session: boto3.Session) -> Any:
    return _HarnessClients(aws_session)


@pytest.fixture(scope="session")
def provisioned_account(
    local_template: dict[str, Any], aws_session: boto3.Session, harness_session: Any
) -> tuple[Resolver, MotoState]:
    """The template's resources built once by the local runtime's provisioner (~40 API calls), and moto's
    state right after: each test gets its own copy of that account (rtp_cli/local/emulation.py)."""
    with mock_aws(), moto_session(aws_session):
        resolver = provision_template(local_template, harness_session)
        return resolver, MotoState()


@pytest.fixture
def backoff_sleeps() -> list[float]:
    """The processor's waits between a record's attempts in this test (see `pipeline`), in order."""
    return []


@pytest.fixture
def pipeline(
    provisioned_account: tuple[Resolver, MotoState],
    recorder: CallRecorder,
    aws_session: boto3.Session,
    harness_session: Any,
    backoff_sleeps: list[float],
) -> Iterator[Pipeline]:
    """A fresh moto account holding the template's key, table, bucket and queues; handlers wired to it.

    The processor's backoff between a transform's attempts is noted in `backoff_sleeps` instead of slept
    (queue_processor.backoff_sleep): the retries, their number and delays are the same, without the ~3 s
    of waiting they cost the handler tests. No test's clock depends on it: a test that runs an invocation
    out of time sets the context's remaining time itself. tests/handlers/test_processor_retries.py checks
    that the handler sleeps with time.sleep otherwise.

    On teardown, every AWS call the test's handlers made is checked against the calling function's IAM
    policy in the template: a call the role does not allow fails the test.
    """
    provisioned, state = provisioned_account
    resolver = copy.copy(provisioned)  # the names it resolves to are the account's; a test may add its own
    resolver.refs, resolver.attrs = dict(provisioned.refs), dict(provisioned.attrs)
    with mock_aws(), moto_session(aws_session):  # the session `boto3.client()` uses, fresh clients
        state.restore()
        start = len(recorder.calls)
        built = Pipeline(resolver, harness_session, recorder)
        handler = built.module("processor")
        sleep, handler.backoff_sleep = handler.backoff_sleep, backoff_sleeps.append  # not `monkeypatch`: a
        try:  # test may undo its own patches halfway
            yield built
        finally:
            handler.backoff_sleep = sleep
    missing = iam.violations(recorder.since(start), built.resolve, built.functions)
    if missing:
        pytest.fail("calls not allowed by the function's IAM policy in the template:\n" + iam.report(missing))


@pytest.fixture
def function_logs(pipeline: Pipeline) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON log lines the three functions' Powertools Loggers write during the test."""
    buffer = io.StringIO()
    handlers = [pipeline.module(name).logger.registered_handler for name in sorted(pipeline.functions)]
    previous = [handler.setStream(buffer) for handler in handlers]
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)
