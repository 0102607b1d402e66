"""Argument checks that fail early with the offending value and the allowed range (torchreid's habit).

Each check returns the value it accepted, so a constructor can check and store in one line
(``self.epsilon = unit_interval("epsilon", epsilon)``); a bad value raises ``ValueError`` with one message
shape per kind of range, the same for every module of ``training``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

N = TypeVar("N", int, float)
T = TypeVar("T")


def at_least(name: str, value: N, low: N) -> N:
    """``value`` when ``value >= low``.

    Raises:
        ValueError: ``{name} must be >= {low}, got {value}``.
    """
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def positive(name: str, value: N) -> N:
    """``value`` when ``value > 0``.

    Raises:
        ValueError: ``{name} must be > 0, got {value}``.
    """
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def unit_interval(name: str, value: float, *, include_one: bool = False) -> float:
    """``value`` when it lies in [0, 1) — a dropout or smoothing probability — or in [0, 1] with
    ``include_one``.

    Raises:
        ValueError: ``{name} must be in [0, 1), got {value}`` (or ``[0, 1]``).
    """
    if not (0.0 <= value <= 1.0 if include_one else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in [0, 1{']' if include_one else ')'}, got {value}")
    return value


def one_of(name: str, value: T, allowed: Sequence[T]) -> T:
    """``value`` when it is one of ``allowed``.

    Raises:
        ValueError: ``{name} must be one of a, b, c; got 'value'``.
    """
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value
