"""The training loop: data, model, losses, optimizer, warm-up schedule, AMP, checkpoints, logs, DDP.

One :class:`Trainer` runs one :class:`TrainConfig`. The run's family (:mod:`training.families`) builds the
model and its losses and computes the loss dict of a batch; the trainer only weights, sums and steps.
Rank 0 writes ``RUN/config.json``, ``RUN/log.csv`` (and TensorBoard events when ``tensorboard`` is
installed), ``RUN/last.pt`` after every epoch and ``RUN/checkpoint.pt`` = the best validation mAP so far.
Validation uses the query / gallery of the test split, as torchreid and fast-reid do, every ``eval_every``
epochs and after the last; ``eval_every = 0`` means none, and ``checkpoint.pt`` is the last epoch. A fresh
(not resumed) run replaces the checkpoints and log of an earlier run in the same folder.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from service.contract.preprocess import PreprocessSpec
from training.data.dataset import ReidImageDataset, ReidPairDataset
from training.data.datasets import build_dataset
from training.data.samplers import PairSampler, PKSampler, RatioSchedule
from training.data.transforms import AugmentConfig, TrainTransform
from training.engine import distributed
from training.engine.checkpoint import architecture_name, build_model, load_weights, read_checkpoint
from training.engine.checkpoint import save_checkpoint as _save
from training.engine.config import TrainConfig
from training.engine.optim import build_optimizer, lr_factor, set_lr
from training.engine.progress import Progress
from training.evaluation.evaluator import evaluate_model
from training.losses import CenterLoss, CombinedLoss, center_optimizer, rescale_center_gradients

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    """What a finished run produced."""

    output_dir: Path
    checkpoint: Path
    epochs_completed: int
    best_metrics: dict[str, float] = field(default_factory=dict)
    train_minutes: float = 0.0
    stopped_by_budget: bool = False


def preprocess_spec(cfg: TrainConfig) -> PreprocessSpec:
    """The preprocessing contract of a run (also what the export writes into the manifest)."""
    return PreprocessSpec(height=cfg.height, width=cfg.width, mean=cfg.mean, std=cfg.std)


def augment_config(cfg: TrainConfig) -> AugmentConfig:
    """The augmentation settings of a run."""
    return AugmentConfig(
        flip=cfg.flip, pad=cfg.pad, pad_mode=cfg.pad_mode, erasing=cfg.erasing, erasing_fill=cfg.erasing_fill,
        zoom=cfg.zoom, width_shift=cfg.width_shift, color_jitter=cfg.color_jitter,
    )


class Trainer:
    """Trains one configuration.

    Args:
        cfg: The resolved run config.
        resume: A checkpoint (usually ``RUN/last.pt``) to continue from, or None.
        progress: Show the epoch's progress (rank 0 only): a bar on a terminal, else a line every N steps.
    """

    def __init__(self, cfg: TrainConfig, *, resume: str | Path | None = None, progress: bool = True) -> None:
        self.cfg = cfg
        self.ctx = distributed.setup(cfg.device)
        threads = cfg.threads
        if threads == 0 and self.ctx.distributed and self.ctx.device.type == "cpu":
            threads = max(1, torch.get_num_threads() // self.ctx.world_size)
        if threads > 0:
            torch.set_num_threads(threads)
        distributed.seed_everything(cfg.seed + self.ctx.rank)
        self.out = Path(cfg.output_dir)
        self.progress = progress
        self.split = build_dataset(cfg.dataset, cfg.root, **cfg.dataset_options)
        self.num_classes = self.split.num_train_ids
        self.spec = preprocess_spec(cfg)
        self.loader, self.sampler = self._build_loader()
        self.family = cfg.family
        self.model = build_model(cfg, self.num_classes).to(self.ctx.device)
        self.losses = {
            name: loss.to(self.ctx.device)
            for name, loss in self.family.build_losses(cfg, self.num_classes, self.model).items()
        }
        center = self.losses.get("center")  # the one loss with parameters of its own (the class centers)
        self.center_loss = center if isinstance(center, CenterLoss) else None
        self.combined = CombinedLoss(cfg.loss_weights())
        self.optimizer = build_optimizer(cfg, self.model.parameters())
        self.center_opt = (
            center_optimizer(self.center_loss, lr=cfg.center_lr) if self.center_loss is not None else None
        )
        self.use_amp = cfg.amp and self.ctx.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        self.start_epoch, self.best_score = 0, float("-inf")
        self.best_metrics: dict[str, float] = {}
        if resume is not None:
            self._resume(Path(resume))
        self.net: nn.Module = self.model
        if self.ctx.distributed:
            device_ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            # The ID classifier is unused when its weight is 0: DDP must then look for unused parameters.
            self.net = DistributedDataParallel(
                self.model, device_ids=device_ids, find_unused_parameters=cfg.id_weight == 0
            )
            distributed.broadcast_from_main(self.center_loss, self.ctx)  # DDP broadcasts only the model

    # ------------------------------------------------------------------ construction
    def _build_loader(self) -> tuple[DataLoader, PKSampler | PairSampler]:
        cfg, ctx = self.cfg, self.ctx
        transform = TrainTransform(augment_config(cfg), self.spec, seed=cfg.seed + ctx.rank)
        images = ReidImageDataset(self.split.train, self.spec, transform, cache=cfg.cache_images)
        common: dict[str, Any] = {
            "num_workers": cfg.num_workers,
            "persistent_workers": cfg.num_workers > 0,
            "pin_memory": ctx.device.type == "cuda",
            "drop_last": True,
        }
        sampler: PKSampler | PairSampler
        if cfg.sampler == "pk":
            sampler = PKSampler(
                images.person_ids, p=cfg.p, k=cfg.k, seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size
            )
            return DataLoader(images, batch_size=cfg.p * cfg.k, sampler=sampler, **common), sampler
        ratio = RatioSchedule(
            start=cfg.pair_ratio_start, growth=cfg.pair_ratio_growth, cap=cfg.pair_ratio_cap
        )
        sampler = PairSampler(
            images.person_ids, pairs_per_epoch=cfg.pairs_per_epoch, ratio=ratio, seed=cfg.seed,
            rank=ctx.rank, world_size=ctx.world_size, camera_ids=images.camera_ids,
        )
        batch = min(cfg.batch_size, len(sampler))
        return DataLoader(ReidPairDataset(images), batch_size=batch, sampler=sampler, **common), sampler

    def _resume(self, path: Path) -> None:
        ckpt = read_checkpoint(path, map_location=self.ctx.device)
        load_weights(self.model, ckpt, architecture=architecture_name(self.cfg), source=str(path))
        if "optimizer" in ckpt:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.center_loss is not None and "center_loss" in ckpt:
            self.center_loss.load_state_dict(ckpt["center_loss"])
            if self.center_opt is not None and "center_optimizer" in ckpt:
                self.center_opt.load_state_dict(ckpt["center_optimizer"])
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        best = ckpt.get("best_score")
        self.best_score = float(best) if best is not None else float("-inf")
        self.best_metrics = dict(ckpt.get("metrics") or {})

    # ------------------------------------------------------------------ one step
    def _step(self, batch: list[Any]) -> tuple[dict[str, float], int]:
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        if self.center_opt is not None:
            self.center_opt.zero_grad(set_to_none=True)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.use_amp else nullcontext()
        with autocast:
            terms, count = self.family.loss_terms(self.net, batch, self.losses, self.ctx.device)
        total, components = self.combined(terms)
        scale = 1.0
        if self.scaler is not None:
            scale = float(self.scaler.get_scale())
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            total.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.center_loss is not None and self.center_opt is not None:
            distributed.average_gradients(list(self.center_loss.parameters()), self.ctx)
            grad = self.center_loss.centers.grad
            if grad is not None and bool(torch.isfinite(grad).all()):
                rescale_center_gradients(self.center_loss, weight=cfg.center_weight * scale)
                self.center_opt.step()
        return components, count

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train from ``start_epoch`` to ``cfg.epochs`` (or until the time budget), validating and saving."""
        cfg, ctx = self.cfg, self.ctx
        if ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.start_epoch == 0:
                for name in (BEST_CHECKPOINT, LAST_CHECKPOINT, "log.csv"):
                    (self.out / name).unlink(missing_ok=True)
            cfg.save(self.out / "config.json")
        ctx.barrier()
        log = _RunLog(self.out, list(self.combined.weights)) if ctx.is_main else None
        steps_per_epoch = len(self.loader)
        started = time.perf_counter()
        budget_s = cfg.max_train_minutes * 60 if cfg.max_train_minutes is not None else None
        stopped, last_epoch = False, self.start_epoch - 1
        for epoch in range(self.start_epoch, cfg.epochs):
            self.sampler.set_epoch(epoch)
            self.net.train()
            sums: dict[str, float] = {}
            images_seen, epoch_start, steps = 0, time.perf_counter(), 0
            bar = Progress(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch, unit="it",
                           enabled=self.progress and ctx.is_main, summary=False)  # fmt: skip
            for step, batch in enumerate(self.loader):
                position = epoch + step / steps_per_epoch
                if budget_s is not None:
                    # Under a time budget the schedule also advances with the clock, so the learning rate has
                    # decayed when the budget ends, however fast the machine is.
                    position = max(position, cfg.epochs * (time.perf_counter() - started) / budget_s)
                lr = cfg.lr * lr_factor(cfg, min(position, float(cfg.epochs)))
                set_lr(self.optimizer, lr)
                components, count = self._step(batch)
                for name, value in components.items():
                    sums[name] = sums.get(name, 0.0) + value
                images_seen += count
                steps += 1
                bar.update(images=count * ctx.world_size, losses=components, lr=lr)
                if budget_s is not None and distributed.any_rank(
                    time.perf_counter() - started > budget_s, ctx
                ):
                    stopped = True
                    break
            bar.close()
            last_epoch = epoch
            seconds = time.perf_counter() - epoch_start
            row: dict[str, float] = {name: total / max(steps, 1) for name, total in sums.items()}
            row.update(lr=lr, images_per_s=images_seen * ctx.world_size / max(seconds, 1e-9), seconds=seconds)
            final = stopped or epoch == cfg.epochs - 1
            validate = cfg.eval_every > 0 and (final or (epoch + 1) % cfg.eval_every == 0)
            if ctx.is_main:
                self._end_epoch(epoch, row, validate, log)
            ctx.barrier()
            if stopped:
                break
        minutes = (time.perf_counter() - started) / 60
        if log is not None:
            log.close()
        best, last = self.out / BEST_CHECKPOINT, self.out / LAST_CHECKPOINT
        never_validated = self.best_score == float("-inf")  # eval_every = 0: the last epoch is the result
        if ctx.is_main and last.is_file() and (never_validated or not best.is_file()):
            # (also after --resume, where checkpoint.pt of the earlier segment would otherwise stay)
            shutil.copyfile(last, best)
        return TrainResult(
            output_dir=self.out, checkpoint=self.out / BEST_CHECKPOINT, epochs_completed=last_epoch + 1,
            best_metrics=self.best_metrics, train_minutes=minutes, stopped_by_budget=stopped,
        )

    def _end_epoch(self, epoch: int, row: dict[str, float], validate: bool, log: _RunLog | None) -> None:
        metrics: dict[str, float] = {}
        if validate:
            result = evaluate_model(
                self.model, self.cfg, self.split.query, self.split.gallery, spec=self.spec,
                device=self.ctx.device, batch_size=max(self.cfg.batch_size, 64),
                num_workers=self.cfg.num_workers,
            )
            metrics = {"rank1": result.metrics["rank1"], "mAP": result.metrics["mAP"]}
            row.update(metrics)
        improved = validate and metrics["mAP"] > self.best_score
        if improved:
            self.best_score, self.best_metrics = metrics["mAP"], metrics
        last = self.save_checkpoint(self.out / LAST_CHECKPOINT, epoch=epoch, metrics=metrics)
        if improved:
            shutil.copyfile(last, self.out / BEST_CHECKPOINT)
        if log is not None:
            log.write(epoch, row)
        shown = " ".join(f"{k}={v:.4g}" for k, v in row.items())
        mark = " *best*" if improved else ""
        print(f"epoch {epoch + 1}/{self.cfg.epochs}: {shown}{mark}", file=sys.stderr)

    def save_checkpoint(self, path: Path, *, epoch: int, metrics: dict[str, float]) -> Path:
        """Write a checkpoint of the current state (rank 0 calls this)."""
        return _save(
            path, model=self.model, cfg=self.cfg, num_classes=self.num_classes, epoch=epoch,
            optimizer=self.optimizer, center_loss=self.center_loss, center_optimizer=self.center_opt,
            scaler=self.scaler, metrics=metrics,
            best_score=self.best_score if self.best_score != float("-inf") else None,
        )


class _RunLog:
    """``log.csv`` (one row per epoch, appended across ``--resume``) plus TensorBoard when installed."""

    def __init__(self, out: Path, loss_names: list[str]) -> None:
        self.columns = ["epoch", "total", *loss_names, "lr", "images_per_s", "seconds", "rank1", "mAP"]
        path = out / "log.csv"
        new = not path.is_file()
        self.file = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
        self.tensorboard: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(out / "tensorboard"))
        except (ImportError, ModuleNotFoundError):
            self.tensorboard = None

    def write(self, epoch: int, row: dict[str, float]) -> None:
        self.writer.writerow({"epoch": epoch + 1, **{k: f"{v:.6g}" for k, v in row.items()}})
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                self.tensorboard.add_scalar(f"train/{key}", value, epoch + 1)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
