"""The :class:`Backbone` contract shared by every backbone family.

A backbone maps an image batch ``N×3×H×W`` to its final feature map ``N×C×h×w`` (``C == feature_dim``);
pooling belongs to the heads. A backbone is an ordered chain of named *levels*; :meth:`Backbone.forward`
runs the whole chain, :meth:`Backbone.forward_levels` returns the outputs of the requested levels. The
last level's output is always the final feature map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

LevelStep = tuple[str, Callable[[Tensor], Tensor]]


class Backbone(nn.Module):
    """Base class of every backbone: a chain of named levels ending in the final feature map.

    Subclasses set :attr:`feature_dim` and implement :meth:`level_steps`, the ordered ``(level name,
    function)`` pairs whose composition is the backbone. Parameter names follow the reference
    implementation of each family (torchvision or torchreid) so their state dicts load unchanged.

    Attributes:
        feature_dim: Number of channels of the final feature map.
    """

    feature_dim: int

    def level_steps(self) -> list[LevelStep]:
        """The ordered ``(level name, function)`` pairs; each function maps the previous level's output."""
        raise NotImplementedError

    @property
    def level_names(self) -> list[str]:
        """Names accepted by :meth:`forward_levels`, shallowest first; the last is the final feature map."""
        return [name for name, _ in self.level_steps()]

    def forward(self, x: Tensor) -> Tensor:
        """Final feature map ``N×feature_dim×h×w`` of an image batch ``N×3×H×W`` (not pooled)."""
        for _, step in self.level_steps():
            x = step(x)
        return x

    def forward_levels(self, x: Tensor, levels: Sequence[str]) -> dict[str, Tensor]:
        """Intermediate feature maps of an image batch, keyed by level name.

        Only the part of the network up to the deepest requested level is run.

        Args:
            x: Image batch ``N×3×H×W``.
            levels: Level names, each one of :attr:`level_names`.

        Returns:
            ``{level: feature map}`` in the order of ``levels``.

        Raises:
            ValueError: If ``levels`` is empty or names an unknown level.
        """
        steps = self.level_steps()
        valid = [name for name, _ in steps]
        unknown = [level for level in levels if level not in valid]
        if unknown:
            raise ValueError(f"unknown level {unknown[0]!r} for {type(self).__name__}; valid levels: {valid}")
        if not levels:
            raise ValueError(f"levels must name at least one of {valid}")
        deepest = max(valid.index(level) for level in levels)
        outputs: dict[str, Tensor] = {}
        for name, step in steps[: deepest + 1]:
            x = step(x)
            outputs[name] = x
        return {level: outputs[level] for level in levels}

    def num_parameters(self) -> int:
        """Number of parameters (trainable or not; buffers excluded)."""
        return sum(p.numel() for p in self.parameters())
