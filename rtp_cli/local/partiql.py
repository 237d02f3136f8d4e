"""PartiQL INSERTs in BatchExecuteStatement, as DynamoDB runs them, for the local emulation.

The processor writes records a client named as `INSERT INTO "table" VALUE {'pk': ?, ...}` statements, 25 to
a BatchExecuteStatement (handlers/rtp_pipeline/storage.py). moto cannot run them: its PartiQL parser refuses
`?` parameters in an INSERT, and it hands every statement a JSON copy of every table (a cost that grows with
the table). So this module runs exactly that statement shape itself, with moto's own put and checks, and
leaves any other statement to moto:

- an INSERT whose key is stored already is refused with the statement's error `DuplicateItem` ("If the
  DynamoDB table already has an item with the same primary key as the primary key of the item being
  inserted, DuplicateItemException is returned":
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.insert.html), with the
  stored item when the statement asks for ALL_OLD (BatchStatementError.Item "will be set if
  ReturnValuesOnConditionCheckFailure is specified as ALL_OLD":
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchStatementError.html; the page
  does not say whether that covers DuplicateItem, so the processor also works without it);
- each statement is answered on its own, in order, and one statement's error does not stop the others ("A
  HTTP 200 response does not mean that all statements in the BatchExecuteStatement succeeded":
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchExecuteStatement.html);
- an item DynamoDB refuses for its content (too large, a key too long, an empty key) is the statement's
  `ValidationError`; more than 25 statements is a ValidationException for the whole call
  ("BatchExecuteStatement and BatchWriteItem can perform no more than 25 statements per batch":
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ql-reference.multiplestatements.batching.html).

tests/test_local_partiql.py holds each of these, and fails by name if moto's backend method moves.
"""

from __future__ import annotations

import re
from typing import Any

MAX_STATEMENTS = 25
# The one shape run here: a double-quoted table name and a tuple of single-quoted names, each bound to `?`.
_INSERT = re.compile(r'\s*INSERT\s+INTO\s+"([^"]+)"\s+VALUE\s+\{(.*)\}\s*', re.IGNORECASE | re.DOTALL)
_NAME_BOUND = re.compile(r"\s*'([^']+)'\s*:\s*\?\s*(,|$)", re.DOTALL)


def parse_insert(statement: str, parameters: list[Any]) -> tuple[str, dict[str, Any]] | None:
    """(table, item) of `INSERT INTO "t" VALUE {'a': ?, ...}` with its parameters; None for anything else."""
    match = _INSERT.fullmatch(statement)
    if match is None:
        return None
    body, names, position = match.group(2), [], 0
    while position < len(body):
        bound = _NAME_BOUND.match(body, position)
        if bound is None or (bound.group(2) == "," and bound.end() == len(body)):
            return None
        names.append(bound.group(1))
        position = bound.end()
    if not names or len(names) != len(parameters) or len(set(names)) != len(names):
        return None
    return match.group(1), dict(zip(names, parameters, strict=True))


def patch_batch_insert(models: Any) -> None:
    """Give moto.dynamodb.models' DynamoDBBackend a BatchExecuteStatement that runs INSERTs (see above)."""
    original = models.DynamoDBBackend.batch_execute_statement
    if getattr(original, "runs_inserts", False):
        return
    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        ResourceNotFoundException,
    )
    from moto.dynamodb.responses import validate_put_has_empty_keys

    def run_insert(backend: Any, table_name: str, item: dict[str, Any], all_old: bool) -> dict[str, Any]:
        try:
            table = backend.get_table(table_name)
        except ResourceNotFoundException:
            return {"Error": {"Code": "ResourceNotFound", "Message": "Requested resource not found"}}
        key = table.hash_key_attr
        try:
            validate_put_has_empty_keys(item, table)
            backend.put_item(
                table_name,
                item,
                condition_expression="attribute_not_exists(#k)",
                expression_attribute_names={"#k": key},
            )
        except ConditionalCheckFailed:
            error: dict[str, Any] = {
                "Code": "DuplicateItem",
                "Message": "Duplicate primary key exists in table",
            }
            stored = backend.get_item(table_name, {key: item[key]}) if all_old else None
            if stored is not None:
                error["Item"] = stored.to_json()["Attributes"]
            return {"Error": error}
        except JsonRESTError as error:  # moto's ValidationExceptions come in more than one class
            if error.relative_error_type != "ValidationException":
                raise
            return {"Error": {"Code": "ValidationError", "Message": error.message}}
        return {"TableName": table_name}

    def batch_execute_statement(self: Any, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        inserts = [parse_insert(s.get("Statement", ""), s.get("Parameters", [])) for s in statements]
        if not statements or not all(inserts):
            return original(self, statements)
        if len(statements) > MAX_STATEMENTS:
            raise MockValidationException(
                f"1 validation error detected: Value at 'statements' failed to satisfy constraint: Member "
                f"must have length less than or equal to {MAX_STATEMENTS}"
            )
        return [
            run_insert(self, insert[0], insert[1], s.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD")
            for s, insert in zip(statements, inserts, strict=True)
            if insert
        ]

    batch_execute_statement.runs_inserts = True  # type: ignore[attr-defined]
    models.DynamoDBBackend.batch_execute_statement = batch_execute_statement
