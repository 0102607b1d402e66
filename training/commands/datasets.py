"""``reid datasets``: list the supported datasets, or show the split counts of one on disk.

Examples::

    reid datasets                      # one line per dataset: name and summary
    reid datasets show market1501 --root data/market1501
    reid datasets show cuhk03 --root data/cuhk03 -o variant=labeled -o protocol=new

Torch-free: it imports only the dataset loaders.
"""

from __future__ import annotations

import argparse
import inspect
import typing
from pathlib import Path
from typing import Any

HELP = "list the supported datasets, or show the counts of one on disk"
DESCRIPTION = (
    "Without arguments (or with 'list'), print every supported dataset with a one-line summary. "
    "'show NAME --root DIR' loads the dataset and prints the number of identities, images and cameras "
    "of its train / query / gallery subsets; loader options are given as --option key=value."
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``datasets`` arguments to ``parser``."""
    parser.add_argument("action", nargs="?", default="list", choices=("list", "show"), help="default: list")
    parser.add_argument("name", nargs="?", help="dataset name (for 'show')")
    parser.add_argument("--root", type=Path, help="dataset folder (for 'show')")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, e.g. split_index=3 (repeatable)",
    )


def loader_options(loader: Any) -> dict[str, tuple[type, Any]]:
    """Keyword options of a loader: name -> (type, default)."""
    hints = typing.get_type_hints(loader)
    options = {}
    for name, param in inspect.signature(loader).parameters.items():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            options[name] = (hints.get(name, str), param.default)
    return options


def parse_options(pairs: list[str], loader: Any, dataset: str) -> dict[str, Any]:
    """Turn ``key=value`` strings into loader keyword arguments of the loader's annotated types.

    Raises:
        ValueError: A pair without ``=``, an unknown option (the message lists the valid ones), or a value
            that does not convert.
    """
    valid = loader_options(loader)
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"option {pair!r} is not key=value")
        if key not in valid:
            names = ", ".join(sorted(valid)) or "none"
            raise ValueError(f"dataset {dataset!r} has no option {key!r}; valid options: {names}")
        kind = valid[key][0]
        try:
            if kind is bool:
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError(text)
                parsed[key] = text.lower() in _TRUE
            elif kind in (int, float):
                parsed[key] = kind(text)
            else:
                parsed[key] = text
        except ValueError:
            raise ValueError(f"option {key}={text!r}: expected a value of type {kind.__name__}") from None
    return parsed


def run(args: argparse.Namespace) -> int:
    """List the datasets, or load one and print its counts."""
    from training.data.datasets import build_dataset, dataset_registry

    registry = dataset_registry()
    if args.action == "list":
        if args.name is not None:
            raise ValueError(f"'list' takes no dataset name (got {args.name!r}); use 'show NAME --root DIR'")
        width = max(len(name) for name in registry)
        for name, info in sorted(registry.items()):
            print(f"{name:<{width}}  {info.summary}")
        return 0
    if args.name is None:
        raise ValueError(f"'show' needs a dataset name; valid names: {', '.join(sorted(registry))}")
    if args.name not in registry:
        raise ValueError(f"unknown dataset {args.name!r}; valid names: {', '.join(sorted(registry))}")
    if args.root is None:
        raise ValueError(f"'show {args.name}' needs --root DIR (the dataset folder)")
    options = parse_options(args.option, registry[args.name].loader, args.name)
    split = build_dataset(args.name, args.root, **options)
    print(split.format_counts())
    return 0
