"""A training recipe: a name, the paper it follows and the :class:`TrainConfig` fields it sets.

The registry of recipes is :mod:`training.engine.recipes`; the recipes themselves live in
:mod:`training.engine.recipes` (the BoT pipeline and the CPU demos) and :mod:`training.engine.paper_recipes`
(the five papers). Both import this module, neither imports the other's registrations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from training.engine.config import TrainConfig
from training.engine.overrides import apply_overrides


@dataclass(frozen=True)
class Recipe:
    """A named starting configuration.

    Attributes:
        name: Registry key (``reid train --recipe NAME``).
        paper: The paper (file in ``papers/``) the recipe follows.
        description: One line: what it trains and why.
        defaults: TrainConfig fields the recipe sets (all others keep the dataclass defaults); fields of the
            family's section as ``family.field`` (``"siamese.dropout": 0.2``).
        notes: What was chosen where the paper is vague (printed by ``reid recipes -v``).
    """

    name: str
    paper: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    notes: str = ""

    def config(self) -> TrainConfig:
        """The recipe's config before command-line overrides."""
        return apply_overrides(TrainConfig(), {**self.defaults, "recipe": self.name})
