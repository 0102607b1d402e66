"""Reading foreign checkpoint files safely and matching their state dicts to a model, key by key."""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class SourceError(ValueError):
    """A source file cannot be imported; the message says which file and why, in one line."""


def read_checkpoint(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never arbitrary objects.

    Raises:
        FileNotFoundError: No such file.
        SourceError: A truncated / corrupt file, or a pickle holding objects other than tensors.
    """
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(
            f"{path}: not a plain state dict (torch.load with weights_only=True refused it: {first})"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(
            f"{path}: cannot read the file (truncated or not a PyTorch file?): {first}"
        ) from exc


def unwrap_state_dict(
    loaded: Any, path: Path, keys: tuple[str, ...] = ("state_dict",)
) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint (under one of ``keys``, or bare), without ``module.`` prefixes.

    Raises:
        SourceError: The file holds no mapping of names to tensors.
    """
    if isinstance(loaded, Mapping):
        for key in keys:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded:
        raise SourceError(f"{path}: expected a state dict (name -> tensor), got {_describe(loaded)}")
    out: dict[str, torch.Tensor] = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SourceError(
                f"{path}: expected a state dict (name -> tensor); entry {key!r} is a {type(value).__name__}"
                + (f" (top-level keys: {sorted(map(str, loaded))[:6]})" if not isinstance(value, torch.Tensor)
                   else "")
            )
        out[key.removeprefix("module.")] = value
    return out


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"a mapping with keys {sorted(map(str, value))[:6]}"
    return f"a {type(value).__name__}"


def first_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str | None:
    """The first difference between two state dicts in the expected order, or None when they match.

    A missing ``num_batches_tracked`` buffer is not a difference (old files lack it).
    """
    for key, value in expected.items():
        if key not in given:
            if key.endswith("num_batches_tracked"):
                continue
            return f"missing key {key!r} (shape {tuple(value.shape)})"
        if tuple(given[key].shape) != tuple(value.shape):
            return f"key {key!r} has shape {tuple(given[key].shape)}, the arch expects {tuple(value.shape)}"
    for key, value in given.items():
        if key not in expected:
            return f"unexpected key {key!r} (shape {tuple(value.shape)})"
    return None
