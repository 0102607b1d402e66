"""Model families: one module per family, each registering one :class:`Family` (see :mod:`.registry`).

``embedding`` (backbone → BN neck, BoT), ``siamese`` (shared backbone + verification head), ``pairwise``
(the MLS encoder + comparator) and ``multidepth`` (smoothed multi-depth VGG maps). A new family is a new
module here (or anywhere, e.g. a test) with a ``@register_family`` class; nothing else changes.
"""

import importlib

from training.families.registry import (
    LOSS_NAMES,
    Family,
    families_with_loss,
    family_names,
    get_family,
    legacy_field,
    register_family,
)

#: The built-in family modules, imported (and so registered) in this order: `reid train --help` order.
BUILTIN: tuple[str, ...] = ("embedding", "siamese", "pairwise", "multidepth")
for _module in BUILTIN:
    importlib.import_module(f"training.families.{_module}")

__all__ = [
    "BUILTIN",
    "LOSS_NAMES",
    "Family",
    "families_with_loss",
    "family_names",
    "get_family",
    "legacy_field",
    "register_family",
]
