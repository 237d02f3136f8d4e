"""moto's response serializer, the same answers with less work per structure (the served runtime and the
in-process tests: rtp_cli/local/emulation.py and tests/conftest.py install it).

moto (5.x) builds every response from its botocore output shape: for each member of each structure it
makes an `AttributePickerContext` (joining the serializer's whole path into a string), instantiates each
of its alias providers and asks them for the names the value may carry the member under. A DynamoDB item
is a map of AttributeValue structures of ten members each: a 20-attribute GetItem answer made ~1,600
contexts and ~10,000 alias-provider objects, half of the request's CPU in the handler tests.

When the value is a plain `dict` (moto's DynamoDB items, most JSON answers), those names depend only on
the member's shape and on the value's type, not on its contents (a dict has no `Meta`, its class name is
`dict`): here they are asked once per member shape, from moto's own picker (so its alias rules stay
moto's), and remembered on the shape. Everything else (the value found first wins, None is left out, the
member is serialized by moto's own methods) is as moto does it. A value that is not a plain dict, a
picker with response transformers (they depend on the path), or a serializer that picks members its own
way (REST: headers, payloads) goes through moto's own code.

tests/test_moto_guards.py checks that responses are byte for byte moto's own (hypothesis, DynamoDB items
of every attribute type) and fails by name if moto changes what this relies on.
"""

from __future__ import annotations

from typing import Any

_PLANS = "_rtp_member_plans"  # on a structure shape: {picker kind: [(member, its shape, its names)]}
_moto_structure: Any = None  # moto's own ResponseSerializer._serialize_type_structure, once patched
_plain_classes: dict[type, bool] = {}  # serializer class -> picks members with the base class's methods
_MISSING: Any = None  # moto.core.utils.MISSING, once patched


def _picker_kind(picker: Any) -> tuple[Any, ...] | None:
    """What a picker's member names depend on, besides the shapes (None: a picker whose names this cannot
    know in advance: response transformers depend on the path, an unknown picker on anything)."""
    from moto.core.serialize import AttributePicker, DefaultAttributePicker

    kind = type(picker)
    if kind is DefaultAttributePicker:
        return (kind,)
    if isinstance(picker, AttributePicker) and not picker.response_transformers:
        return (kind, *picker.alias_providers)
    return None


def _member_plan(picker: Any, kind: tuple[Any, ...], shape: Any) -> list[tuple[str, Any, tuple[str, ...]]]:
    """For each member of structure `shape`: its name, its shape, and the names, in moto's order, under
    which `picker` looks it up in a plain dict (moto's own alias rules, asked about an empty dict: the same
    answer for every plain dict)."""
    from moto.core.serialize import AttributePickerContext, DefaultAttributePicker

    plans: dict[tuple[Any, ...], list[tuple[str, Any, tuple[str, ...]]]] | None = shape.__dict__.get(_PLANS)
    if plans is None:
        plans = {}
        setattr(shape, _PLANS, plans)
    plan = plans.get(kind)
    if plan is None:
        plan = []
        for key, member in shape.members.items():
            member.parent = shape  # as moto sets it before asking: its alias rules read it
            if kind[0] is DefaultAttributePicker:
                names: tuple[str, ...] = (key,)
            else:
                names = tuple(picker.get_possible_keys(AttributePickerContext(obj={}, key=key, shape=member)))
            plan.append((key, member, names))
        plans[kind] = plan
    return plan


def _plain_serializer(serializer: Any) -> bool:
    """Whether the serializer's class picks structure members with ResponseSerializer's own methods."""
    from moto.core.serialize import ResponseSerializer

    kind = type(serializer)
    plain = _plain_classes.get(kind)
    if plain is None:
        plain = (
            kind.get_value is ResponseSerializer.get_value
            and kind._serialize_structure_member is ResponseSerializer._serialize_structure_member
        )
        _plain_classes[kind] = plain
    return plain


def _serialize_type_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
    """moto's ResponseSerializer._serialize_type_structure, with a plain dict's member names known."""
    kind = _picker_kind(self._value_picker) if type(value) is dict and _plain_serializer(self) else None
    if kind is None:
        _moto_structure(self, serialized, value, shape, key)
        return
    missing = _MISSING
    wrapper: Any = self.MAP_TYPE() if key else serialized
    for member_key, member_shape, names in _member_plan(self._value_picker, kind, shape):
        member_shape.parent = shape  # as moto does
        member_value = None
        for name in names:
            found = value.get(name, missing) if "." not in name else _dotted(value, name)
            if found is not missing:
                member_value = found
                break
        if member_value is not None:
            self._serialize(wrapper, member_value, member_shape, member_key)
    if key:
        self._default_serialize(serialized, wrapper, shape, key)


def _dotted(value: Any, name: str) -> Any:
    from moto.core.utils import get_value

    return get_value(value, name, _MISSING)


def patch_moto_serializer() -> None:
    """Install it (idempotent, process-wide)."""
    global _moto_structure, _MISSING
    from moto.core.serialize import ResponseSerializer
    from moto.core.utils import MISSING

    _MISSING = MISSING

    if ResponseSerializer._serialize_type_structure is not _serialize_type_structure:
        _moto_structure = ResponseSerializer._serialize_type_structure
        ResponseSerializer._serialize_type_structure = _serialize_type_structure  # type: ignore[method-assign]


def moto_structure_serializer() -> Any:
    """moto's own method (the guards compare with it)."""
    from moto.core.serialize import ResponseSerializer

    return _moto_structure or ResponseSerializer._serialize_type_structure
