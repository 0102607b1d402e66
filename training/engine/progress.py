"""Progress of long work: a tqdm bar on a terminal, a log line every N iterations otherwise.

As in torchreid and fast-reid, a training epoch shows its iterations, images/s, running (epoch-mean) losses
and the ETA; passes over images (``reid eval``'s feature extraction, the export's calibration pass,
``reid synth``) show images done, images/s and the ETA. Where stderr is a terminal this is a tqdm bar that
redraws in place; elsewhere (CI, a file, a pipe) it is one plain line every :data:`LOG_EVERY` iterations (an
iteration is a training step, or a batch of a pass), so a log shows where a long run is without one line per
step::

    epoch 3/60: 40/187 it (21%) total 4.213 id 3.911 lr 3.50e-04 212 img/s, eta 0:00:41, 0:00:11 elapsed

Commands set the defaults once from ``--no-progress`` / ``--log-every N`` (:func:`add_arguments`,
:func:`configure_from_args`); everything is written to stderr, so stdout keeps its JSON summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: Iterations between two log lines when stderr is not a terminal.
LOG_EVERY = 20
_defaults: dict[str, Any] = {"enabled": True, "every": LOG_EVERY}


def configure(*, enabled: bool | None = None, every: int | None = None) -> None:
    """Set the defaults of every later :class:`Progress`: shown at all, and the log interval.

    Raises:
        ValueError: ``every`` < 1.
    """
    if every is not None:
        if every < 1:
            raise ValueError(f"--log-every must be >= 1 iteration, got {every}")
        _defaults["every"] = every
    if enabled is not None:
        _defaults["enabled"] = enabled


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--no-progress`` and ``--log-every N`` to a command's parser."""
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar or progress lines (stderr)"
    )
    parser.add_argument(
        "--log-every", type=int, default=LOG_EVERY, metavar="N",
        help=f"when stderr is not a terminal, one progress line every N iterations (default {LOG_EVERY})",
    )


def configure_from_args(args: argparse.Namespace) -> None:
    """:func:`configure` from the flags of :func:`add_arguments`."""
    configure(enabled=not args.no_progress, every=args.log_every)


def _clock(seconds: float) -> str:
    whole = max(round(seconds), 0)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class Progress:
    """Progress of ``total`` iterations: a bar on a terminal, a line every ``every`` iterations elsewhere.

    Args:
        desc: What runs, e.g. ``"epoch 3/60"`` or ``"features"``.
        total: Units expected (iterations or images), None if unknown.
        unit: ``"it"`` (iterations; pass ``images=`` to :meth:`update` for images/s) or ``"img"``.
        enabled: False shows nothing (also when :func:`configure` disabled progress).
        every: Iterations (:meth:`update` calls) between log lines; None takes the configured default.
        stream: Where to write; None is the current ``sys.stderr``.
        summary: Also log a last line at :meth:`close` (passes); a training epoch prints its own summary.
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "img",
        enabled: bool = True,
        every: int | None = None,
        stream: TextIO | None = None,
        summary: bool = True,
    ) -> None:
        self.desc, self.total, self.unit, self.summary = desc, total, unit, summary
        self.every = int(every if every is not None else _defaults["every"])
        if self.every < 1:
            raise ValueError(f"every must be >= 1 iteration, got {self.every}")
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and bool(_defaults["enabled"])
        self.done = 0  # units (iterations or images)
        self.calls = 0  # update() calls: the iterations the log interval counts
        self.images = 0
        self.sums: dict[str, float] = {}
        self.shown: dict[str, float] = {}
        self.started = time.perf_counter()
        self._last_logged = 0
        isatty = getattr(self.stream, "isatty", None)
        self.bar: tqdm | None = None
        if self.enabled and callable(isatty) and isatty():
            self.bar = tqdm(
                total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=False
            )

    def update(
        self, n: int = 1, *, images: int | None = None, losses: Mapping[str, float] | None = None,
        **shown: float,
    ) -> None:
        """Advance by ``n`` units (one iteration).

        Args:
            n: Units done (iterations, or images for ``unit="img"``).
            images: Images processed, for images/s (default: ``n`` when the unit is images).
            losses: Shown as running means over this progress (an epoch).
            **shown: Shown as they are (e.g. ``lr``).
        """
        self.done += n
        self.calls += 1
        self.images += images if images is not None else (n if self.unit == "img" else 0)
        for name, value in (losses or {}).items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.shown = {k: float(v) for k, v in shown.items()}
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self._values(rate=self.unit != "img"), refresh=False)  # tqdm shows img/s
            self.bar.update(n)
        elif self.calls % self.every == 0:
            self._log()

    def close(self) -> None:
        """Remove the bar, or log the last line (``summary``) if the last iteration was not logged."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.summary and self.calls and self._last_logged != self.calls:
            self._log()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _values(self, rate: bool = True) -> str:
        """Running means of the losses, the other values, and images/s (``rate``)."""
        means = [f"{k} {v / max(self.calls, 1):.4g}" for k, v in self.sums.items()]
        others = [f"{k} {v:.2e}" if k == "lr" else f"{k} {v:.4g}" for k, v in self.shown.items()]
        seconds = max(time.perf_counter() - self.started, 1e-9)
        return " ".join([*means, *others, *([f"{self.images / seconds:.0f} img/s"] if rate else [])])

    def _log(self) -> None:
        self._last_logged = self.calls
        seconds = time.perf_counter() - self.started
        where = f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)" if self.total \
            else f"{self.done} {self.unit}"  # fmt: skip
        eta = ""
        if self.total and self.done:
            eta = f", eta {_clock(seconds / self.done * max(self.total - self.done, 0))}"
        print(f"{self.desc}: {where} {self._values()}{eta}, {_clock(seconds)} elapsed", file=self.stream,
              flush=True)  # fmt: skip


def track(
    iterable: Iterable[T], desc: str, *, total: int | None = None, size: Callable[[T], int] | None = None,
    unit: str = "img",
) -> Iterator[T]:
    """Yield the items of ``iterable``, advancing a :class:`Progress` by ``size(item)`` (default 1) each.

    Args:
        iterable: E.g. a DataLoader (``size`` = images in a batch) or a stream of written images.
        desc: What the pass is.
        total: Units expected (e.g. images), None if unknown.
        size: Units in one item.
        unit: Unit name.
    """
    with Progress(desc, total, unit=unit) as progress:
        for item in iterable:
            yield item
            progress.update(size(item) if size is not None else 1)


def batch_images(batch: Any) -> int:
    """Images in a DataLoader batch ``(images, ...)`` or a tensor / array of images."""
    first = batch[0] if isinstance(batch, (tuple, list)) else batch
    return len(first)
