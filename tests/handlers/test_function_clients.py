"""The functions' clients are shared between handler tests only while no test changed them
(tests/handlers/conftest.py `_FunctionClients`): a fault injected into one test's client, a Stubber, an
attribute set on it or a retried request (its retry quota) never reaches the next test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from tests.handlers.conftest import _FunctionClients
from tests.handlers.harness import fail_calls

CONFIG = Config(retries={"mode": "standard", "max_attempts": 4})


@pytest.fixture
def pool() -> Iterator[_FunctionClients]:
    with mock_aws():
        yield _FunctionClients(boto3.Session(region_name="us-east-1"))


def _next_test_gets_the_same_client(pool: _FunctionClients, during: Callable[[Any], Any]) -> bool:
    first = pool.client("dynamodb", config=CONFIG)
    during(first)
    pool.give_back()
    second = pool.client("dynamodb", config=CONFIG)
    pool.give_back()
    return second is first


def test_a_client_a_test_only_used_is_handed_to_the_next_test(pool: _FunctionClients) -> None:
    assert _next_test_gets_the_same_client(pool, lambda made: made.list_tables())
    assert _next_test_gets_the_same_client(pool, lambda made: made.exceptions)  # botocore's lazy attribute


def test_a_client_with_an_injected_fault_is_dropped(pool: _FunctionClients) -> None:
    assert not _next_test_gets_the_same_client(
        pool, lambda made: fail_calls(made, "ListTables", lambda _: True, "ServiceUnavailable")
    )


def test_a_client_with_a_stubber_or_an_attribute_of_a_test_is_dropped(pool: _FunctionClients) -> None:
    from botocore.stub import Stubber

    assert not _next_test_gets_the_same_client(pool, lambda made: Stubber(made).activate())
    assert not _next_test_gets_the_same_client(pool, lambda made: setattr(made, "get_item", None))


def test_a_client_that_retried_a_request_is_dropped(
    pool: _FunctionClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its standard-mode retry quota may differ from a new client's."""
    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.models import DynamoDBBackend

    throttled: list[str] = []

    def list_tables(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not throttled:
            throttled.append("once")
            raise JsonRESTError("ThrottlingException", "slow down")
        return real(self, *args, **kwargs)

    real = DynamoDBBackend.list_tables
    monkeypatch.setattr(DynamoDBBackend, "list_tables", list_tables)
    assert not _next_test_gets_the_same_client(pool, lambda made: made.list_tables())
    assert throttled == ["once"]  # it was retried, and succeeded


def test_only_the_functions_call_is_shared(pool: _FunctionClients) -> None:
    made = pool.client("dynamodb", region_name="eu-west-1")
    pool.give_back()
    assert pool.client("dynamodb", region_name="eu-west-1") is not made
    assert pool.client("sqs", config=CONFIG) is not pool.client("dynamodb", config=CONFIG)
