"""The one typed registry behind metrics, model kinds, families, recipes and paper protocols."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from service.contract.registry import Registry


@dataclass(frozen=True)
class _Thing:
    name: str


def test_registry_keeps_order_refuses_twice_and_lists_valid_names_for_an_unknown_one():
    things: Registry[_Thing] = Registry("thing", allowed=("a", "b", "c"))
    b, a = things.add(_Thing("b")), things.add(_Thing("a"))
    assert things.names() == ["b", "a"] and things.values() == [b, a] and things.get("a") is a
    assert "a" in things and "c" not in things and len(things) == 2 and list(things) == ["b", "a"]
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        things.add(_Thing("a"))
    with pytest.raises(ValueError, match="'z' is not one of"):
        things.add(_Thing("z"))
    with pytest.raises(ValueError, match="unknown thing 'c'; valid things: b, a"):
        things.get("c")


def test_plural_in_the_message():
    families: Registry[_Thing] = Registry("model family", "families")
    with pytest.raises(ValueError, match=r"unknown model family 'x'; valid families: $"):
        families.get("x")
