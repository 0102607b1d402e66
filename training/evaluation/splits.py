"""The splits of a paper protocol on the command line: ``--splits 0-4``, one checkpoint per split.

``reid eval --protocol NAME --checkpoint 'runs/x/split{split}/checkpoint.pt' --splits 0-4`` (see
:mod:`training.evaluation.paper_protocols`): :func:`parse_splits` reads the selection,
:func:`split_checkpoints` fills the template, :func:`default_output` names the protocol's report folder.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

#: The placeholder of ``--checkpoint`` replaced by the split index.
SPLIT_PLACEHOLDER = "{split}"

_SPLIT_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_splits(text: str | None, num_splits: int) -> tuple[int, ...]:
    """Split indices from ``"0-4"``, ``"0,3,7"`` or a mix (``"0-2,5"``); None selects all of them.

    Raises:
        ValueError: Empty or malformed text, a reversed range, a repeated or out-of-range index.
    """
    if text is None:
        return tuple(range(num_splits))
    valid = f"valid: 0..{num_splits - 1}, e.g. '0-4' or '0,3,7'"
    splits: list[int] = []
    for item in text.replace(" ", "").split(","):
        match = _SPLIT_ITEM.match(item)
        if match is None:
            raise ValueError(f"--splits: cannot parse {item!r} in {text!r} ({valid})")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ValueError(f"--splits: reversed range {item!r} ({valid})")
        splits.extend(range(first, last + 1))
    out_of_range = sorted({k for k in splits if k >= num_splits})
    if out_of_range:
        raise ValueError(f"--splits: {out_of_range} out of range ({valid})")
    repeated = sorted({k for k in splits if splits.count(k) > 1})
    if repeated:
        raise ValueError(f"--splits: {repeated} selected more than once in {text!r}")
    return tuple(splits)


def split_checkpoints(template: str, splits: Sequence[int]) -> list[Path]:
    """One checkpoint path per split: ``{split}`` in ``template`` replaced by the split index.

    Raises:
        ValueError: No splits, or more than one split with a template without ``{split}`` (one model would
            be scored on test identities it was trained on).
    """
    if not splits:
        raise ValueError("no splits selected")
    if SPLIT_PLACEHOLDER not in template and len(splits) > 1:
        raise ValueError(
            f"--checkpoint {template} has no {SPLIT_PLACEHOLDER} but {len(splits)} splits are selected: a "
            f"model trained on one split has seen the other splits' test identities; give one checkpoint "
            f"per split (e.g. runs/x/split{SPLIT_PLACEHOLDER}/checkpoint.pt) or select one split (--splits K)"
        )
    return [Path(template.replace(SPLIT_PLACEHOLDER, str(k))) for k in splits]


def default_output(template: str, name: str) -> Path:
    """``protocol-NAME/`` in the deepest folder of ``template`` without ``{split}``.

    ``runs/x/split{split}/checkpoint.pt`` → ``runs/x/protocol-NAME``; ``runs/x/checkpoint.pt`` (one split)
    → ``runs/x/protocol-NAME``, beside the checkpoint.
    """
    folder = Path(template).parent
    while SPLIT_PLACEHOLDER in folder.name:
        folder = folder.parent
    return folder / f"protocol-{name}"
