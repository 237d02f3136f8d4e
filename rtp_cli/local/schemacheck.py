"""A fast yes for JSON documents that satisfy a draft-4 JSON schema, for the local API's request validation.

jsonschema walks a 500-record request body keyword by keyword through generic machinery: about 10 % of
the local runtime's CPU per request. Here a schema written with the keywords below is compiled once into
plain Python checks with jsonschema's draft-4 semantics (`type` as draft 4 defines object, array, string,
boolean and null; `required`, `properties`, `additionalProperties: false` or a schema, `items` as one
schema, `minItems`/`maxItems`, `minLength`/`maxLength` in code points, `pattern` by `re.search`, `oneOf`
as exactly one). The check only ever says "valid": any other answer, and any schema with another
keyword, goes to jsonschema itself, which writes the error messages as before. So a request is accepted
exactly when jsonschema accepts it (tests/cli/test_local_schemacheck.py compares both on generated documents).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

# Annotations: no effect on validity.
_IGNORED = frozenset({"$schema", "title", "description"})
_SUPPORTED = _IGNORED | {
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "oneOf",
}
_TYPES: dict[str, Check] = {
    "object": lambda value: type(value) is dict,
    "array": lambda value: type(value) is list,
    "string": lambda value: type(value) is str,
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
}


class UnsupportedError(Exception):
    """The schema uses something this compiler does not implement: validate with jsonschema only."""


def compile_schema(schema: Any) -> Check | None:
    """A check that is True only for documents jsonschema's Draft4Validator finds valid; None when the
    schema uses anything else than the keywords above."""
    try:
        return _compile(schema)
    except (UnsupportedError, re.error, TypeError, AttributeError, ValueError):
        # Something this compiler cannot read (an ECMA-only pattern such as \p{L}, a malformed keyword):
        # jsonschema alone decides, as it did before this compiler existed.
        return None


def _compile(schema: Any) -> Check:
    if not isinstance(schema, dict) or not set(schema) <= _SUPPORTED:
        raise UnsupportedError(schema)
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not all(isinstance(name, str) and name in _TYPES for name in names):
            raise UnsupportedError(schema["type"])
        kinds = [_TYPES[name] for name in names]
        checks.append(lambda value: any(kind(value) for kind in kinds))
    checks += _object_checks(schema) + _array_checks(schema) + _string_checks(schema)
    if "oneOf" in schema:
        branches = [_compile(branch) for branch in schema["oneOf"]]
        checks.append(lambda value: sum(1 for branch in branches if branch(value)) == 1)

    def check(value: Any) -> bool:
        return all(each(value) for each in checks)

    return check


def _object_checks(schema: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    required = schema.get("required", [])
    properties = {name: _compile(sub) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    if not isinstance(required, list) or not isinstance(extra, bool | dict):
        raise UnsupportedError(schema)
    extra_check = _compile(extra) if isinstance(extra, dict) else None

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return True  # object keywords apply to objects only
        if any(name not in value for name in required):
            return False
        for name, item in value.items():
            sub = properties.get(name)
            if sub is not None:
                if not sub(item):
                    return False
            elif extra is False or (extra_check is not None and not extra_check(item)):
                return False
        return True

    if required or properties or extra is not True:
        checks.append(check)
    return checks


def _array_checks(schema: dict[str, Any]) -> list[Check]:
    items = schema.get("items")
    if items is not None and not isinstance(items, dict):
        raise UnsupportedError(items)  # a list of schemas (tuple validation)
    item_check = _compile(items) if items is not None else None
    low, high = schema.get("minItems"), schema.get("maxItems")
    if (low is not None and type(low) is not int) or (high is not None and type(high) is not int):
        raise UnsupportedError(schema)

    def check(value: Any) -> bool:
        if type(value) is not list:
            return True
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            return False
        return item_check is None or all(item_check(item) for item in value)

    return [check] if item_check is not None or low is not None or high is not None else []


def _string_checks(schema: dict[str, Any]) -> list[Check]:
    low, high, pattern = schema.get("minLength"), schema.get("maxLength"), schema.get("pattern")
    if (low is not None and type(low) is not int) or (high is not None and type(high) is not int):
        raise UnsupportedError(schema)
    if pattern is not None and not isinstance(pattern, str):
        raise UnsupportedError(pattern)
    search = re.compile(pattern).search if pattern is not None else None

    def check(value: Any) -> bool:
        if type(value) is not str:
            return True
        if (low is not None and len(value) < low) or (high is not None and len(value) > high):
            return False
        return search is None or search(value) is not None

    return [check] if low is not None or high is not None or search is not None else []
