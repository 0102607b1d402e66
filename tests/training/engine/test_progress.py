"""Progress of long work: a line every N iterations off a terminal, a bar on one, nothing when disabled."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import pytest

from training.engine import progress
from training.engine.progress import Progress, track


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _default_settings() -> Iterator[None]:
    saved = dict(progress._defaults)
    progress.configure(enabled=True, every=progress.LOG_EVERY)
    yield
    progress._defaults.update(saved)


def test_off_a_terminal_one_line_every_n_iterations_with_losses_rate_and_eta() -> None:
    out = io.StringIO()  # not a terminal: CI, a file, a pipe
    bar = Progress("epoch 2/5", 10, unit="it", every=3, stream=out, summary=False)
    for step in range(10):
        bar.update(images=16, losses={"total": 2.0 + step, "id": 1.0}, lr=3.5e-4)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [re.search(r"(\d+)/10 it", line).group(1) for line in lines] == ["3", "6", "9"]  # type: ignore[union-attr]
    assert lines[0].startswith("epoch 2/5: 3/10 it (30%) total 3 id 1 lr 3.50e-04 ")  # running means
    assert " total 6 id 1 " in lines[2]  # the running mean of 2..10, not the last loss (10)
    for line in lines:
        assert re.search(r" \d+ img/s, eta \d:\d\d:\d\d, \d:\d\d:\d\d elapsed$", line), line


def test_a_pass_logs_its_last_line_and_counts_images() -> None:
    out = io.StringIO()
    batches = [list(range(4))] * 5 + [list(range(2))]  # 22 images in 6 batches
    with Progress("features", 22, every=4, stream=out) as bar:
        for batch in batches:
            bar.update(len(batch))
    lines = out.getvalue().splitlines()
    assert [line.split(":")[1].split("(")[0].strip() for line in lines] == ["16/22 img", "22/22 img"]
    assert "eta 0:00:00" in lines[-1]


def test_on_a_terminal_a_bar_and_no_log_lines() -> None:
    term = _Terminal()
    seen = list(track(range(30), "synth", total=30))
    assert seen == list(range(30))
    with Progress("epoch 1/1", 30, unit="it", every=3, stream=term, summary=False) as bar:
        for _ in range(30):
            bar.update(images=8, losses={"total": 1.0})
    text = term.getvalue()
    assert text.startswith("\repoch 1/1:") and "/30 [" in text  # tqdm draws in place (\r, no newline)
    assert "elapsed\n" not in text  # no log lines


def test_disabled_progress_writes_nothing() -> None:
    out, term = io.StringIO(), _Terminal()
    for stream in (out, term):
        with Progress("x", 10, every=1, stream=stream, enabled=False) as bar:
            bar.update(5)
    progress.configure(enabled=False)  # --no-progress
    with Progress("x", 10, every=1, stream=out) as bar:
        bar.update(5)
    assert out.getvalue() == "" and term.getvalue() == ""
    with pytest.raises(ValueError, match="--log-every must be >= 1"):
        progress.configure(every=0)
