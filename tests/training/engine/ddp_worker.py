"""Run by ``torchrun`` in ``test_train_e2e.py``: ``reid train`` as the command runs it, and every rank then
saves what it holds (model state, center-loss centers, the weights DDP started from) to ``OUTPUT/rankN.pt``,
so the test can compare the ranks. Usage: ``torchrun ... ddp_worker.py train --recipe ... --output OUTPUT``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from service.cli import main
from training.engine.trainer import Trainer, TrainResult

_fit = Trainer.fit


def _fit_and_save(self: Trainer) -> TrainResult:
    start = {k: v.detach().clone() for k, v in self.model.state_dict().items()}  # after DDP's broadcast
    result = _fit(self)
    state: dict[str, Any] = {"model": self.model.state_dict(), "start": start}
    state["world_size"] = self.ctx.world_size
    if self.center_loss is not None:
        state["centers"] = self.center_loss.centers.detach().clone()
    torch.save(state, Path(self.cfg.output_dir) / f"rank{self.ctx.rank}.pt")
    return result


if __name__ == "__main__":
    Trainer.fit = _fit_and_save  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
