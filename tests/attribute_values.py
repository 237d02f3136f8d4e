"""Hypothesis strategies for DynamoDB attribute values, shared by the moto guard tests (requests as a
client sends them: binary values base64 text) and the serializer tests (values as moto holds them: bytes)."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)


def attribute_values(*, binary_as_text: bool, number_and_binary_sets: bool) -> st.SearchStrategy[Any]:
    """Scalars (S, N, B, BOOL, NULL, SS; NS and BS too when asked), nested in L and M up to 8 leaves."""
    binary = st.binary(max_size=20)
    scalars = [
        st.builds(lambda s: {"S": s}, st.text(max_size=40)),
        st.builds(lambda n: {"N": str(n)}, st.integers(-(10**12), 10**12)),
        st.builds(lambda b: {"B": base64.b64encode(b).decode() if binary_as_text else b}, binary),
        st.builds(lambda v: {"BOOL": v}, st.booleans()),
        st.just({"NULL": True}),
        st.builds(
            lambda s: {"SS": sorted(s)}, st.sets(st.text(min_size=1, max_size=5), min_size=1, max_size=3)
        ),
    ]
    if number_and_binary_sets:
        scalars += [
            st.builds(
                lambda s: {"NS": sorted(map(str, s))}, st.sets(st.integers(-99, 99), min_size=1, max_size=3)
            ),
            st.builds(
                lambda s: {"BS": sorted(s)},
                st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3),
            ),
        ]
    return st.recursive(
        st.one_of(scalars),
        lambda inner: st.one_of(
            st.builds(lambda items: {"L": items}, st.lists(inner, max_size=3)),
            st.builds(lambda m: {"M": m}, st.dictionaries(names, inner, max_size=3)),
        ),
        max_leaves=8,
    )
