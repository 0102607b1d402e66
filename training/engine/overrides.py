"""Command-line overrides of a :class:`TrainConfig`: ``reid train --lr 1e-3 --siamese.dropout 0.2``.

Every common field is a flag named after it; every field of a family's section is ``--FAMILY.FIELD`` (the
old flat names, ``--siamese_dropout``, ``--mls_levels``, still work). Strings are parsed by the field's type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any

from training.engine.config import TrainConfig, _split_sections, field_names


def all_field_names() -> list[str]:
    """Every name ``reid train --NAME`` takes: the common fields, then ``family.field`` of every section."""
    from training.families import family_names, get_family

    names = [name for name in field_names() if name != "section"]
    for family in map(get_family, family_names()):
        if family.options_type is not None:
            names += [f"{family.name}.{f.name}" for f in dataclasses.fields(family.options_type)]
    return names


def field_types() -> dict[str, Any]:
    """Field name → resolved type annotation (section fields as ``family.field``)."""
    from training.families import family_names, get_family

    types_ = {k: v for k, v in typing.get_type_hints(TrainConfig).items() if k != "section"}
    for family in map(get_family, family_names()):
        if family.options_type is not None:
            hints = typing.get_type_hints(family.options_type)
            types_.update({f"{family.name}.{k}": v for k, v in hints.items()})
    return types_


def parse_field(name: str, text: str) -> Any:
    """Parse a command-line string into the type of config field ``name`` (``lr`` or ``siamese.dropout``).

    Booleans accept true/false/1/0/yes/no; ``none`` gives None for optional fields; tuples take
    comma-separated values (``--milestones 40,70``); dicts (``dataset_options``) take ``key=value`` pairs
    separated by commas, or a JSON object. Old flat names (``mls_levels``) are read as their section field.

    Raises:
        ValueError: Unknown field, or a string that does not parse as the field's type.
    """
    from training.families import legacy_field

    types_ = field_types()
    legacy = legacy_field(name)
    key = f"{legacy[0]}.{legacy[1]}" if legacy is not None else name
    if key not in types_:
        raise ValueError(f"unknown config field {name!r}; valid fields: {', '.join(all_field_names())}")
    return _parse(name, types_[key], text)


def _parse(name: str, tp: Any, text: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if text.strip().lower() in ("none", "null", ""):
            return None
        return _parse(name, inner[0], text)
    try:
        if tp is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if tp in (int, float, str):
            return tp(text)
        if origin is tuple:
            parts = [t for t in text.replace(" ", ",").split(",") if t]
            return tuple(_parse(name, args[0], t) for t in parts)
        if origin is dict:
            text = text.strip()
            if text.startswith("{"):
                return dict(json.loads(text))
            out: dict[str, Any] = {}
            for item in filter(None, text.split(",")):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(item)
                out[key.strip()] = _literal(value.strip())
            return out
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"--{name}: cannot parse {text!r} as {_type_name(tp)}") from exc
    raise ValueError(f"--{name}: unsupported field type {tp}")


def _literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def apply_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """A new config with ``overrides`` (field → value, or field → string to parse) applied and validated.

    Section fields are named ``family.field`` (``siamese.dropout``) or by their old flat name
    (``siamese_dropout``); a new ``model_kind`` starts from that family's default section.

    Raises:
        ValueError: Unknown field (lists the valid ones), a field of another family's section, an unparsable
            string or an invalid resulting config.
    """
    types_ = field_types()
    parsed: dict[str, Any] = {}
    for name, value in overrides.items():
        if isinstance(value, str) and types_.get(name) is not str:
            value = parse_field(name, value)
        parsed[name] = value
    kind = str(parsed.get("model_kind", cfg.model_kind))
    common, section = _split_sections(parsed, kind=kind, strict=True)
    values = {k: v for k, v in cfg.to_dict().items() if k != cfg.model_kind}
    values.update(common)
    if kind == cfg.model_kind and cfg.section is not None:
        section = {**dataclasses.asdict(cfg.section), **section}
    return TrainConfig(**values, section=section or None)
