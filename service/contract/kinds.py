"""Kinds of served model, defined once (torch-free): the manifest's ``kind`` is looked up here.

Each kind states the files it ships (by role), the manifest section that describes its extra graphs, and what
the service opens to run it: the manifest validates against the first two, ``ModelRuntime.load``
(:mod:`service.inference.sessions`) follows the last. A new kind is one :func:`register` call here plus its
name in :data:`ModelKindName`.

* ``embedding``: ``embedding.onnx`` (images → embeddings), scored by the embedding metrics.
* ``siamese``: the embedding graph plus ``verification_head.onnx`` and its weights ``head_weights.npz``
  (``verification`` section), which add the ``softmax`` metric.
* ``pairwise``: ``encoder.onnx`` (images → descriptor + encoding) and ``comparator.onnx`` (two encodings →
  score) (``pairwise`` section), which add the ``pairwise`` metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from service.contract.registry import Registry

#: The kinds a manifest may name.
ModelKindName = Literal["embedding", "siamese", "pairwise"]
#: What a file of a model folder is for.
FileRole = Literal["embedding", "verification_head", "head_weights", "encoder", "comparator"]
#: The manifest sections a kind may require.
Section = Literal["verification", "pairwise"]


@dataclass(frozen=True)
class ModelKind:
    """One kind of served model.

    Attributes:
        name: The manifest's ``kind``.
        roles: The files it must ship, by role; the first is the graph that embeds images.
        section: The manifest section it requires (the other kinds' sections are refused), or None.
        verification_head: The service opens ``verification_head`` and ``head_weights`` beside the embedding.
        comparator: The service runs it as an encoder plus a comparator
            (:class:`service.inference.pairwise.PairwiseModel`).
    """

    name: str
    roles: tuple[FileRole, ...]
    section: Section | None = None
    verification_head: bool = False
    comparator: bool = False

    @property
    def embed_role(self) -> FileRole:
        """The role of the graph that turns images into embeddings (or descriptors)."""
        return self.roles[0]


_KINDS: Registry[ModelKind] = Registry("model kind", allowed=get_args(ModelKindName))
#: Add a kind (its name must be in :data:`ModelKindName`); a name registered twice raises ``ValueError``.
register = _KINDS.add


register(ModelKind(name="embedding", roles=("embedding",)))
register(ModelKind(
    name="siamese", roles=("embedding", "verification_head", "head_weights"), section="verification",
    verification_head=True,
))
register(ModelKind(name="pairwise", roles=("encoder", "comparator"), section="pairwise", comparator=True))

#: Every kind name, in registry order.
KINDS: tuple[str, ...] = tuple(_KINDS.names())
#: Each manifest section → the kind that requires it (and alone may have it).
SECTIONS: dict[str, str] = {k.section: k.name for k in _KINDS.values() if k.section is not None}
if set(KINDS) != set(get_args(ModelKindName)):
    raise RuntimeError(f"ModelKindName disagrees with the registry: {KINDS}")


#: The registered kind called ``name``; an unknown name raises ``ValueError`` listing the valid ones.
get = _KINDS.get
