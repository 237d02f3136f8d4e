"""The embedded AWS emulation (moto's application in this process, served with keep-alive by
rtp_cli/local/awsserver.py), with two DynamoDB transaction fixes.

moto's `TransactWriteItems` snapshots the *whole table* with `copy.deepcopy` once per item of the
transaction, for rollback. A 99-item transaction on a table of N items deep-copies 99 x N items, so local
processing slowed to minutes for a few thousand records (and the processor then hit its timeout). Here
the rollback snapshot is a shallow copy of the table's item index with deep copies of only the items the
transaction touches (the only ones it can change), taken before any write: rollback restores exactly the
same state as before, at a cost proportional to the transaction instead of the table.
moto also runs concurrent transactions interleaved; DynamoDB transactions are isolated, so they are
serialized here with a lock.

moto answers any credentials by default, so any process on this machine could read and write the
environment's table, bucket and queues directly, around the API. Given the local keys, the emulation
answers only requests signed with them: moto's own IAM authentication (INITIAL_NO_AUTH_ACTION_COUNT = 0)
with one user, `local-developer`, who holds exactly those keys and may do anything. Other keys get
InvalidClientTokenId / InvalidAccessKeyId, a wrong secret SignatureDoesNotMatch.

moto also gives every KMS key an RSA-2048 private key when it is created, symmetric keys included (the
`else` of moto.kms.utils.generate_private_key): about 0.2 s of CPU per key, most of what building the
stack's resources costs. A symmetric key never signs, so its private key is never read; here symmetric
and HMAC keys share one, made on first use. Asymmetric keys still get their own (`patch_moto_kms`).

And moto's SQS queue spells out every attribute name (`camelcase_to_underscores`, a pure string function,
character by character) each time it lists its attributes, which it does for every queue call: about 60
conversions per call, the largest single cost of moto's SQS. Here moto.sqs.models gets the same function,
memoized (`patch_moto_sqs`).

Building the stack's resources takes about 40 API calls (~0.14 s); a process that needs the same fresh
account many times (the handler tests: one per test) builds it once and copies moto's state back
(`MotoState`): moto's own reset replaces each backend's `__dict__`, and so does the restore.

Every use of moto internals lives in this module, and tests/test_moto_guards.py fails by name when a moto
upgrade changes one: the `copy` global of moto.dynamodb.models, the `_messages` list of an SQS queue, the
`generate_private_key` global of moto.kms.models, the `camelcase_to_underscores` global of
moto.sqs.models, the backends `MotoState` copies (`BackendDict._instances`, each backend's `__dict__`)
and moto's logs backend that `InProcessLogs` ships the functions' log lines to.
Two more places hold moto internals, guarded the same way: rtp_cli/local/awsserver.py (moto's WSGI
application served with keep-alive) and rtp_cli/local/speedups.py (item construction, JSON parsing).
"""

from __future__ import annotations

import copy
import copyreg
import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rtp_cli.local.partiql import patch_batch_insert

LOCAL_USER = "local-developer"
_state = threading.local()
_transactions = threading.Lock()
_patched = False


class _SnapshotOncePerTable:
    """Stands in for the `copy` module inside moto.dynamodb.models."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: dict[int, Any] | None = None) -> Any:
        snapshots: dict[int, Any] | None = getattr(_state, "snapshots", None)
        if snapshots is not None and isinstance(value, self._table_type) and id(value) in snapshots:
            return snapshots[id(value)]
        return copy.deepcopy(value, memo)


def _snapshot(table: Any, hash_values: list[Any]) -> Any:
    """The table as it is now, for rollback: shared untouched items, private copies of touched ones."""
    from collections import defaultdict

    snapshot = copy.copy(table)
    items: Any = defaultdict(dict)
    if table.has_range_key:
        items.update({key: dict(partition) for key, partition in table.items.items()})
    else:
        items.update(table.items)
    for value in hash_values:
        if value in table.items:  # (never index a defaultdict with a missing key: it would insert)
            items[value] = copy.deepcopy(table.items[value])
    snapshot.items = items
    return snapshot


def _touched(backend: Any, transact_items: list[dict[str, Any]]) -> dict[int, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    by_table: dict[str, tuple[Any, list[Any]]] = {}
    for entry in transact_items:
        _, operation = next(iter(entry.items()))
        table = backend.tables.get(operation.get("TableName"))
        if table is None:
            continue
        attributes = operation.get("Item") or operation.get("Key") or {}
        if table.hash_key_attr not in attributes:
            return {}  # malformed: let moto report it (and snapshot the slow way)
        by_table.setdefault(table.name, (table, []))[1].append(DynamoType(attributes[table.hash_key_attr]))
    return {id(table): _snapshot(table, values) for table, values in by_table.values()}


def patch_moto_dynamodb() -> None:
    global _patched
    if _patched:
        return
    import moto.dynamodb.models as models

    original = models.DynamoDBBackend.transact_write_items
    models.copy = _SnapshotOncePerTable(models.Table)  # type: ignore[assignment]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _transactions:
            _state.snapshots = _touched(self, transact_items)
            try:
                original(self, transact_items)
            finally:
                _state.snapshots = None

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    patch_batch_insert(models)  # PartiQL INSERTs, which moto cannot run (rtp_cli/local/partiql.py)
    _patched = True


class _SharedSymmetricPrivateKey:
    """Stands in for `generate_private_key` inside moto.kms.models (see above)."""

    def __init__(self, generate: Any) -> None:
        self.generate = generate
        self._shared: Any = None

    def __call__(self, key_spec: str) -> Any:
        if key_spec != "SYMMETRIC_DEFAULT" and not key_spec.startswith("HMAC_"):
            return self.generate(key_spec)  # asymmetric: its own key pair, as in moto
        if self._shared is None:
            self._shared = self.generate(key_spec)
        return self._shared


def patch_moto_kms() -> None:
    import moto.kms.models as models

    if not isinstance(models.generate_private_key, _SharedSymmetricPrivateKey):
        models.generate_private_key = _SharedSymmetricPrivateKey(models.generate_private_key)


def patch_moto_sqs() -> None:
    import moto.sqs.models as models

    if not hasattr(models.camelcase_to_underscores, "cache_info"):
        models.camelcase_to_underscores = functools.cache(models.camelcase_to_underscores)


_open_auth_count: float | None = None  # moto's auth setting before require_credentials


def require_credentials(access_key_id: str, secret_access_key: str) -> None:
    """From now on this process's moto answers only requests signed with these keys (see above)."""
    import json

    from moto import settings
    from moto.iam.models import iam_backends

    from rtp_cli.local.template import ACCOUNT_ID

    iam = iam_backends[ACCOUNT_ID]["global"]
    iam.create_user(region_name="us-east-1", user_name=LOCAL_USER)
    iam.put_user_policy(
        LOCAL_USER,
        "local-environment",
        json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(LOCAL_USER)
    key.access_key_id, key.secret_access_key = access_key_id, secret_access_key
    global _open_auth_count
    if _open_auth_count is None:
        _open_auth_count = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


def release_credentials() -> None:
    """Undo `require_credentials` when the emulation stops: the setting is process-wide, so a process that
    goes on using moto (a test session running an environment in-process) must get open moto back."""
    global _open_auth_count
    if _open_auth_count is None:
        return
    from moto import settings

    settings.INITIAL_NO_AUTH_ACTION_COUNT = _open_auth_count
    _open_auth_count = None


def all_messages(queue: Any) -> list[Any]:
    """Every message a moto SQS queue holds: visible, in flight and delayed.

    The SQS API cannot read a queue without receiving (which counts as a delivery attempt and moves
    messages toward the DLQ), and moto's public `Queue.messages` is only the visible ones
    (`pending_messages`: only those in flight), so this reads moto's private `_messages`, here alone.
    """
    messages: list[Any] = list(queue._messages)
    return messages


class InProcessLogs:
    """The runtime's own log shipping (rtp_cli/local/logs.py) into this process's moto CloudWatch Logs,
    with the logs client's interface (`create_log_stream`, `put_log_events`, `exceptions`).

    Through the client, each shipment of the functions' log lines was a signed HTTP request to moto in
    this same process: signing, sending and verifying it took about 9 % of the runtime process's CPU
    under load, for a call moto answers in microseconds. Here the parameters are checked as the client
    checks them before sending (botocore's validator on the operation's input shape: the same
    ParamValidationError for an empty message, say) and go to moto's logs backend, whose refusals come
    back as the client's own exception classes. tests/test_moto_guards.py checks that the stored events
    and the errors are the client's."""

    def __init__(self, client: Any) -> None:
        self.exceptions = client.exceptions
        self._model = client.meta.service_model
        self._region = client.meta.region_name

    def create_log_stream(self, **params: Any) -> dict[str, Any]:
        self._call(
            "CreateLogStream",
            params,
            "create_log_stream",
            params.get("logGroupName"),
            params.get("logStreamName"),
        )
        return {}

    def put_log_events(self, **params: Any) -> dict[str, Any]:
        token, rejected = self._call(
            "PutLogEvents",
            params,
            "put_log_events",
            params.get("logGroupName"),
            params.get("logStreamName"),
            params.get("logEvents"),
        )
        answer: dict[str, Any] = {"nextSequenceToken": token}
        if rejected:
            answer["rejectedLogEventsInfo"] = rejected
        return answer

    def _call(self, operation: str, params: dict[str, Any], method: str, *args: Any) -> Any:
        from botocore.validate import validate_parameters
        from moto.core.exceptions import JsonRESTError
        from moto.logs.models import logs_backends

        from rtp_cli.local.template import ACCOUNT_ID

        validate_parameters(params, self._model.operation_model(operation).input_shape)
        try:
            return getattr(logs_backends[ACCOUNT_ID][self._region], method)(*args)
        except JsonRESTError as error:
            response = {"Error": {"Code": error.error_type, "Message": error.message}}
            raise self.exceptions.from_code(error.error_type)(response, operation) from None


def patch_moto() -> None:
    """Every change this module, speedups.py and serializer.py make to moto, as the served runtime runs it
    (idempotent; the in-process tests install the same set: tests/conftest.py)."""
    from rtp_cli.local.serializer import patch_moto_serializer
    from rtp_cli.local.speedups import patch_moto_speedups

    patch_moto_dynamodb()
    patch_moto_kms()
    patch_moto_sqs()
    patch_moto_speedups()
    patch_moto_serializer()


def start_emulation(
    host: str, port: int, access_key_id: str | None = None, secret_access_key: str | None = None
) -> Any:
    """Start moto's server on host:port (0 = any free port) in this process; returns the server. With
    keys, it answers only requests signed with them."""
    from rtp_cli.local.awsserver import MotoHttpServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request lines from the emulation
    patch_moto()
    if access_key_id and secret_access_key:
        require_credentials(access_key_id, secret_access_key)
    server = MotoHttpServer(host, port)  # moto's application, connections kept alive (awsserver.py)
    server.start()
    return server


@contextmanager
def _fresh_conditions() -> Iterator[None]:
    """For the block, deepcopy gives a new `threading.Condition` for a Condition (an SQS queue guards its
    messages with one: a lock cannot be copied, and a copy of the state needs its own)."""
    copyreg.dispatch_table[threading.Condition] = lambda _: (threading.Condition, ())
    try:
        yield
    finally:
        del copyreg.dispatch_table[threading.Condition]


class MotoState:
    """A copy of every moto backend's state in this process (all services, accounts, regions), taken
    inside an active `mock_aws()`; `restore()` (inside a later `mock_aws()`, which has reset everything)
    puts an independent copy of it back, so what one user of the state changes never reaches the next."""

    def __init__(self) -> None:
        from moto.core.base_backend import BackendDict

        # (the service's BackendDict, a module-level singleton, account, region) -> backend
        backends = {
            (backend_dict, account, region): backend
            for backend_dict in list(BackendDict._instances)  # type: ignore[misc]  # every one in use
            for account, per_account in list(backend_dict.items())
            for region, backend in list(per_account.items())
        }
        self._where = list(backends)
        attributes = [backend.__dict__ for backend in backends.values()]
        with _fresh_conditions():  # one copy, so references across backends stay shared
            self._state: list[dict[str, Any]] = copy.deepcopy(attributes)

    def restore(self) -> None:
        with _fresh_conditions():
            state = copy.deepcopy(self._state)
        for (backend_dict, account, region), attributes in zip(self._where, state, strict=True):
            backend_dict[account][region].__dict__ = attributes
