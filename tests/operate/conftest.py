"""The operator services' unit tests against the `local` template's resources in moto with the real handlers.

`pipeline` is what `rtp_cli.local.inprocess.standalone_pipeline` gives (a fresh account, LAMBDA_ENVIRONMENT,
the handlers' clients made fresh), but the account is built once per session and each test gets its own
copy of it (rtp_cli/local/emulation.py's MotoState, as tests/handlers/conftest.py does): a restore costs
~10 ms where building the template's resources costs ~0.3 s. The boto3 session and call recorder are the
run's (`operate_session`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rtp_cli.local.emulation import MotoState
from rtp_cli.local.inprocess import (
    ELSEWHERE,
    LAMBDA_ENVIRONMENT,
    CallRecorder,
    Pipeline,
    Resolver,
    environment_variables,
    lambda_session,
    moto_session,
    provision_template,
)


@pytest.fixture(scope="session")
def provisioned_local(cached_templates: Mapping[str, dict[str, Any]]) -> tuple[Resolver, MotoState]:
    """The `local` template's resources built once by the local runtime's provisioner, and moto's state
    right after."""
    document = copy.deepcopy(cached_templates["local"])  # the cache's copy is shared by the session
    with environment_variables(LAMBDA_ENVIRONMENT, ELSEWHERE), mock_aws(), moto_session() as session:
        return provision_template(document, session), MotoState()


@pytest.fixture(scope="session")
def operate_session() -> tuple[boto3.Session, CallRecorder]:
    """One boto3 session and call recorder for the run: a session costs ~8 ms to make and each test's own
    clients (`session.client()`, fresh every call) start from its loaded models. No test here reads the
    recorder's calls; the handlers' calls are attributed through it as in `standalone_pipeline`."""
    session = lambda_session()
    recorder = CallRecorder()
    recorder.attach(session)
    return session, recorder


@pytest.fixture
def pipeline(
    provisioned_local: tuple[Resolver, MotoState], operate_session: tuple[boto3.Session, CallRecorder]
) -> Iterator[Pipeline]:
    provisioned, state = provisioned_local
    resolver = copy.copy(provisioned)  # the names it resolves to are the account's; a test may add its own
    resolver.refs, resolver.attrs = dict(provisioned.refs), dict(provisioned.attrs)
    session, recorder = operate_session
    with environment_variables(LAMBDA_ENVIRONMENT, ELSEWHERE), mock_aws(), moto_session(session):
        state.restore()
        yield Pipeline(resolver, session, recorder)
