"""Two of moto's per-request costs, cut without changing any answer (the served local runtime only).

- `Item.__init__` (moto.dynamodb.models.dynamo_type) stores an item's attributes in a `LimitedSizeDict`,
  whose `__setitem__` re-adds the size of every attribute already stored before each insert, to refuse an
  item over the size limit: quadratic in the number of attributes, with a UTF-8 encoding of every value
  each time. Here the same prefix sums are kept as a running total: the same check at the same attribute,
  the same `ItemSizeTooLarge`, the same item. Later `__setitem__` calls (update expressions) still run
  moto's own check. A string's, binary's or number's size is taken directly (`attribute_size`: the same
  number `DynamoType.size` gives, without its chain of type tests per attribute).
- moto's JSON-protocol request parser (`PROTOCOL_PARSERS["json"]`: DynamoDB, SQS, CloudWatch Logs, KMS)
  walks every value of a request against its botocore shape, looking its handler up by name per value and
  trying every member of a structure per value: a DynamoDB attribute value (one member set of ten) cost
  ten lookups. `_FastJSONParser` resolves handlers once per shape type and, for a structure value with a
  single key, looks that key up directly: the same parsed parameters, in the same member order.

- Every request: moto's `BaseResponse.call_action` lists the handler class's methods with
  `inspect.getmembers` (`method_names_from_class`) to see whether the action is one of them: the same
  list each time for a class. Here it is listed once per class (a copy is handed out).
- Every UpdateItem parses its update expression twice (the handler, to list its clauses, then the
  backend) and its condition expression twice, and most of the condition parse is lexing the string
  (regular expressions tried one token at a time). The pipeline sends the same few expressions again and
  again. Here an update expression's syntax tree is parsed once per expression string and shared (moto
  never changes it: its validator works on a deep copy), and a condition expression's tokens are lexed
  once per string and handed out as new nodes (the same nodes moto's lexer makes); what follows the lexing
  (names, values, the tree) is moto's own, every time.

- Every BatchWriteItem: moto refuses a request whose put (or delete) requests hold two items with the same
  JSON (`dynamo_json_dump`, base64 of every binary value included) and finds them by JSON-encoding every
  item and comparing each with all before it. Two items can only have the same JSON if their first
  attributes (name and value) have the same JSON, so here only items that share their first attribute are
  encoded whole: the same refusal for the same requests (`any_same_json`). The backend is looked up once
  per request instead of once per item (moto's `dynamodb_backend` property: the same backend).
  `batch_write_item` is moto's own otherwise (a copy; the guard fails when moto's changes).

tests/test_moto_guards.py fails by name if a moto upgrade changes what these rely on, and checks that
each gives exactly moto's results (hypothesis, on DynamoDB and SQS requests, on items around the limit
and on update and condition expressions).
"""

from __future__ import annotations

from collections import deque
from typing import Any

_PLAN = "_rtp_structure_plan"
_moto_item_init: Any = None  # moto's own Item.__init__, once patched (the guards compare with it)


def _item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    """moto's Item.__init__ with LimitedSizeDict's check done on a running total (see above)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    self.hash_key = hash_key
    self.range_key = range_key
    self.attrs = stored = LimitedSizeDict()
    total = 0
    for key, value in attrs.items():
        typed = DynamoType(value)
        total += bytesize(key) + attribute_size(typed)  # the keys of a dict are distinct: nothing is replaced
        if total > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        dict.__setitem__(stored, key, typed)


def attribute_size(typed: Any) -> int:
    """`DynamoType.size()`: for a string, binary or number, without its chain of type tests (bytesize of
    the string or bytes, len(str()) of the number's text); anything else by moto's own method."""
    kind, leaf = typed.type, typed.value
    if kind == "S" and type(leaf) is str:
        return len(leaf.encode("utf-8"))
    if kind == "N" and type(leaf) is str:
        return len(leaf)
    if kind == "B" and type(leaf) is bytes:
        return len(leaf)
    size: int = typed.size()
    return size


ITEM_SIZE_LIMIT = 405000  # LimitedSizeDict's own constant (guarded: test_moto_guards)


def _structure_plan(shape: Any) -> tuple[list[tuple[str, str, Any]], dict[str, tuple[str, Any]] | None]:
    plan: tuple[list[tuple[str, str, Any]], dict[str, tuple[str, Any]] | None] | None = getattr(
        shape, _PLAN, None
    )
    if plan is None:
        members = [
            (name, member.serialization.get("name", name), member) for name, member in shape.members.items()
        ]
        by_json = {json_name: (name, member) for name, json_name, member in members}
        plan = (members, by_json if len(by_json) == len(members) else None)
        setattr(shape, _PLAN, plan)
    return plan


def fast_json_parser(base: type) -> type:
    """A subclass of moto's JSONParser (`base`) that parses exactly as it does, faster (see above)."""

    class _FastJSONParser(base):
        _handlers: dict[str, Any] = {}

        def _parse_shape(self, shape: Any, node: Any) -> Any:
            type_name = shape.type_name
            handler = self._handlers.get(type_name)
            if handler is None:
                handler = getattr(type(self), f"_parse_{type_name}", None) or type(self)._default_handle
                self._handlers[type_name] = handler
            return handler(self, shape, node)

        def _parse_structure(self, shape: Any, value: Any) -> Any:
            if shape.is_document_type:
                return value
            if value is None:
                return None
            members, by_json = _structure_plan(shape)
            final_parsed = self.MAP_TYPE()
            if by_json is not None and type(value) is dict and len(value) == 1:
                ((json_name, raw_value),) = value.items()
                found = by_json.get(json_name)
                if found is not None and raw_value is not None:
                    final_parsed[found[0]] = self._parse_shape(found[1], raw_value)
                return final_parsed
            for member_name, json_name, member_shape in members:
                raw_value = value.get(json_name)
                if raw_value is not None:
                    final_parsed[member_name] = self._parse_shape(member_shape, raw_value)
            return final_parsed

    _FastJSONParser.__name__ = _FastJSONParser.__qualname__ = f"Fast{base.__name__}"
    return _FastJSONParser


CACHED_EXPRESSIONS = 1024  # per cache: expressions come from clients; the pipeline uses a handful
_moto_method_names: Any = None  # moto's own method_names_from_class, once patched
_moto_lex: Any = None  # moto's own ConditionExpressionParser._lex_condition_expression, once patched
_moto_update_make: Any = None  # moto's own UpdateExpressionParser.make (the function), once patched
_method_names: dict[Any, list[str]] = {}
_lexed: dict[str, tuple[tuple[Any, Any, Any, Any], ...]] = {}
_update_trees: dict[str, Any] = {}


def _method_names_once(clazz: Any) -> list[str]:
    names = _method_names.get(clazz)
    if names is None:
        names = _method_names[clazz] = _moto_method_names(clazz)
    return list(names)


def _lex_once(self: Any) -> deque[Any]:
    """ConditionExpressionParser._lex_condition_expression, lexing each expression string once."""
    expression = self.condition_expression
    tokens = _lexed.get(expression)
    if tokens is None:
        nodes = _moto_lex(self)  # raises for an expression it cannot lex, every time: never cached
        tokens = tuple((n.nonterminal, n.kind, n.text, n.value) for n in nodes)
        if any(n.children for n in nodes):  # moto's lexer makes leaves: anything else is not cached
            return nodes
        if len(_lexed) < CACHED_EXPRESSIONS:
            _lexed[expression] = tokens
    node = self.Node
    return deque(node(nonterminal, kind, text, value, []) for nonterminal, kind, text, value in tokens)


def _update_tree_once(cls: Any, expression_str: Any) -> Any:
    """UpdateExpressionParser.make, parsing each expression string once (see above)."""
    if type(expression_str) is not str:
        return _moto_update_make(cls, expression_str)
    tree = _update_trees.get(expression_str)
    if tree is None:
        tree = _moto_update_make(cls, expression_str)  # a syntax error raises, every time
        if len(_update_trees) < CACHED_EXPRESSIONS:
            _update_trees[expression_str] = tree
    return tree


# sha256 of moto's DynamoHandler.batch_write_item source, which `_batch_write_item` copies (guarded).
MOTO_BATCH_WRITE_ITEM_SHA256 = "26221a09e2b2b1fd"


def any_same_json(items: list[Any]) -> bool:
    """Whether two of `items` have the same `dynamo_json_dump` (moto's duplicate test), encoding whole only
    the items that share their first attribute's name and JSON (equal JSON texts of two objects begin with
    the same first member)."""
    from moto.dynamodb.models.utilities import dynamo_json_dump

    if len(items) < 2:
        return False
    groups: dict[str, list[Any]] = {}
    for item in items:
        first = next(iter(item.items()), None) if isinstance(item, dict) else None
        key = "" if first is None else dynamo_json_dump(list(first))
        if first is None:  # not a map, or an empty one: compared whole, as moto does
            key = "\x00whole"
        groups.setdefault(key, []).append(item)
    for group in groups.values():
        if len(group) > 1:
            texts = [dynamo_json_dump(item) for item in group]
            if len(set(texts)) < len(texts):
                return True
    return False


def _batch_write_item(self: Any) -> Any:
    """moto's DynamoHandler.batch_write_item with `any_same_json` and one backend lookup (see above)."""
    from moto.core.responses import ActionResult
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.responses import validate_put_has_empty_keys

    table_batches = self.body["RequestItems"]
    put_requests = []
    delete_requests = []
    backend = self.dynamodb_backend
    for table_name, table_requests in table_batches.items():
        table = backend.get_table(table_name)
        for table_request in table_requests:
            request_type = list(table_request.keys())[0]  # noqa: RUF015 - moto's code, kept as it is
            request = list(table_request.values())[0]  # noqa: RUF015 - moto's code, kept as it is
            if request_type == "PutRequest":
                item = request["Item"]
                validate_put_has_empty_keys(
                    item,
                    table,
                    custom_error_msg="One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {}",  # noqa: E501
                )
                put_requests.append((table_name, item))
            elif request_type == "DeleteRequest":
                keys = request["Key"]
                delete_requests.append((table_name, keys))
    if any_same_json([k[1] for k in delete_requests]) or any_same_json([k[1] for k in put_requests]):
        raise MockValidationException("Provided list of item keys contains duplicates")
    for table_name, item in put_requests:
        backend.put_item(table_name, item)
    for table_name, keys in delete_requests:
        backend.delete_item(table_name, keys)

    response = {
        "ConsumedCapacity": [
            {
                "TableName": table_name,
                "CapacityUnits": 1.0,
                "Table": {"CapacityUnits": 1.0},
            }
            for table_name, table_requests in table_batches.items()
        ],
        "ItemCollectionMetrics": {},
        "UnprocessedItems": {},
    }

    return ActionResult(response)


_moto_batch_write_item: Any = None  # moto's own DynamoHandler.batch_write_item, once patched


def patch_moto_speedups() -> None:
    """Install both (idempotent, process-wide: the served runtime's process)."""
    import moto.core.parse as parse
    import moto.core.responses as responses
    from moto.dynamodb.models.dynamo_type import Item

    global _moto_item_init, _moto_method_names, _moto_lex, _moto_update_make
    import moto.dynamodb.parsing.expressions as expressions
    from moto.dynamodb.comparisons import ConditionExpressionParser

    update_parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]

    if responses.method_names_from_class is not _method_names_once:
        _moto_method_names = responses.method_names_from_class
        responses.method_names_from_class = _method_names_once
    if ConditionExpressionParser._lex_condition_expression is not _lex_once:
        _moto_lex = ConditionExpressionParser._lex_condition_expression
        ConditionExpressionParser._lex_condition_expression = _lex_once  # type: ignore[method-assign]
    if update_parser.make.__func__ is not _update_tree_once:
        _moto_update_make = update_parser.make.__func__
        update_parser.make = classmethod(_update_tree_once)
    from moto.dynamodb.responses import DynamoHandler

    global _moto_batch_write_item
    if DynamoHandler.batch_write_item is not _batch_write_item:
        _moto_batch_write_item = DynamoHandler.batch_write_item
        DynamoHandler.batch_write_item = _batch_write_item  # type: ignore[method-assign]
    if Item.__init__ is not _item_init:
        _moto_item_init = Item.__init__
        Item.__init__ = _item_init  # type: ignore[method-assign]
    json_parser = parse.PROTOCOL_PARSERS["json"]
    if not json_parser.__name__.startswith("Fast"):
        fast = fast_json_parser(json_parser)
        parse.PROTOCOL_PARSERS["json"] = fast  # type: ignore[assignment]
        assert responses.PROTOCOL_PARSERS is parse.PROTOCOL_PARSERS  # what parse_parameters reads
