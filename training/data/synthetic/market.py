"""Write a synthetic pedestrian dataset in the Market-1501 layout.

Layout (what :func:`training.data.datasets.build_dataset` ``("market1501", out)`` reads)::

    out/bounding_box_train/0001_c1s1_000012_01.jpg   train identities 0001..T, every image
    out/query/0301_c2s1_000053_01.jpg                test identities T+1..N, one image per camera
    out/bounding_box_test/0301_c3s1_000093_01.jpg    the other images of the test identities,
    out/bounding_box_test/0000_c1s1_000001_01.jpg    + distractors (person 0000: one-off people seen once),
    out/bounding_box_test/-1_c2s1_000041_01.jpg      + junk (person -1: cut-off crops, ignored by evaluation)
    out/synthetic.json                               the generator settings and the counts

Names follow Market-1501: ``PPPP_cCsS_FFFFFF_NN.jpg`` (person, camera 1..9, sequence 1, frame, box 01).
Every image is drawn from a generator seeded by ``(seed, person, camera, image index)``, so the files are
byte-identical for a given seed whatever the number of worker processes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from io import BytesIO
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.checks import at_least
from training.data.synthetic.attributes import PersonAttributes, sample_person
from training.data.synthetic.cameras import (
    VIEWS,
    CameraProfile,
    apply_camera_response,
    draw_occluder,
    render_background,
    sample_camera,
)
from training.data.synthetic.render import draw_person
from training.engine.progress import track

SUBSETS = ("bounding_box_train", "query", "bounding_box_test")
_SUPERSAMPLE = 2  # draw at 2x and reduce: cheap anti-aliasing
# seed-sequence tags keeping the streams of persons, cameras, images and splits apart
_PERSON, _CAMERA, _IMAGE, _SPLIT = 0, 1, 2, 3
_REGULAR, _DISTRACTOR, _JUNK = 0, 1, 2


@dataclass(frozen=True)
class SynthConfig:
    """Size and seed of a synthetic Market-1501-style dataset (defaults: the standard benchmark).

    Attributes:
        identities: Number of persons (train + test), 2..9999.
        train_identities: Persons 1..T go to training; None means 60 % of ``identities``.
        cameras: Number of cameras, 2..9 (Market names have one camera digit).
        images_per_camera: Images of every person in every camera, 2..99.
        height: Image height in pixels.
        width: Image width in pixels.
        seed: Seed of everything (persons, cameras, images, the query pick).
    """

    identities: int = 500
    train_identities: int | None = None
    cameras: int = 4
    images_per_camera: int = 4
    height: int = 128
    width: int = 64
    seed: int = 0

    @property
    def num_train(self) -> int:
        return round(0.6 * self.identities) if self.train_identities is None else self.train_identities

    def validate(self) -> None:
        """Raise ValueError naming the first out-of-range setting."""
        checks = [
            ("identities", self.identities, 2, 9999),
            ("train_identities", self.num_train, 1, self.identities - 1),
            ("cameras", self.cameras, 2, 9),
            ("images_per_camera", self.images_per_camera, 2, 99),
            ("height", self.height, 32, 1024),
            ("width", self.width, 16, 1024),
            ("seed", self.seed, 0, 2**63 - 1),
        ]
        for name, value, low, high in checks:
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True)
class _Job:
    subset: str
    kind: int  # _REGULAR / _DISTRACTOR / _JUNK
    person_id: int  # Market id written in the name (0 for distractors, -1 for junk)
    key: int  # person id, or the distractor / junk index
    camera_id: int
    index: int
    frame: int

    @property
    def filename(self) -> str:
        pid = "-1" if self.person_id < 0 else f"{self.person_id:04d}"
        return f"{pid}_c{self.camera_id}s1_{self.frame:06d}_01.jpg"


def person_rng(seed: int, person_id: int) -> np.random.Generator:
    """The generator of one identity's attributes."""
    return np.random.default_rng([seed, _PERSON, person_id])


def camera_profiles(config: SynthConfig) -> tuple[CameraProfile, ...]:
    """The cameras of a dataset (camera ids are 1-based)."""
    return tuple(
        sample_camera(np.random.default_rng([config.seed, _CAMERA, c]), camera_id=c)
        for c in range(1, config.cameras + 1)
    )


def render_pedestrian_image(
    person: PersonAttributes,
    camera: CameraProfile,
    rng: np.random.Generator,
    height: int = 128,
    width: int = 64,
    junk: bool = False,
) -> Image.Image:
    """Render one camera image of ``person`` (scene, viewpoint, framing, occluder, blur, colour response).

    Args:
        person: Identity attributes.
        camera: The camera that takes the image.
        rng: Per-image generator.
        height: Output height in pixels.
        width: Output width in pixels.
        junk: Render a bad detection instead: the person mostly outside the crop.

    Returns:
        An RGB image of ``height`` x ``width`` (before JPEG compression).
    """
    h, w = height * _SUPERSAMPLE, width * _SUPERSAMPLE
    image = render_background(camera, rng, h, w)
    view = VIEWS[int(rng.choice(len(VIEWS), p=np.array(camera.view_probs)))]
    size = camera.scale * float(np.exp(rng.normal(0.0, 0.04))) * h
    cx = w / 2 + float(rng.normal(0.0, 0.05)) * w
    y0 = (h - size) / 2 + float(rng.normal(0.0, 0.025)) * h
    if junk:
        size *= float(rng.uniform(1.0, 2.2))
        cx += float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.45, 0.7)) * w
        y0 -= float(rng.uniform(0.0, 0.5)) * size
    draw_person(ImageDraw.Draw(image), person, view, cx, y0, size, rng)
    if rng.random() < camera.occlusion_prob:
        draw_occluder(image, camera, rng)
    image = image.reduce(_SUPERSAMPLE) if _SUPERSAMPLE > 1 else image
    radius = camera.blur * float(np.exp(rng.normal(0.0, 0.25)))
    if radius > 0.2:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    return apply_camera_response(image, camera, rng)


def plan_jobs(config: SynthConfig) -> list[_Job]:
    """Every image of the dataset: subset, person, camera, index and frame number (no rendering)."""
    config.validate()
    k, cams = config.images_per_camera, config.cameras
    jobs: list[_Job] = []
    for pid in range(1, config.identities + 1):
        train = pid <= config.num_train
        query_pick = np.random.default_rng([config.seed, _SPLIT, pid]).integers(k, size=cams)
        for cam in range(1, cams + 1):
            for idx in range(k):
                subset = SUBSETS[0] if train else (SUBSETS[1] if idx == query_pick[cam - 1] else SUBSETS[2])
                frame = 1 + 40 * idx + (7 * pid + 13 * cam) % 40
                jobs.append(_Job(subset, _REGULAR, pid, pid, cam, idx, frame))
    gallery = sum(job.subset == SUBSETS[2] for job in jobs)
    for kind, count in ((_DISTRACTOR, max(1, round(0.05 * gallery))), (_JUNK, max(1, round(0.02 * gallery)))):
        for i in range(count):
            cam = 1 + i % cams
            pid = 0 if kind == _DISTRACTOR else -1
            jobs.append(_Job(SUBSETS[2], kind, pid, i, cam, i, 1 + 40 * i + (13 * cam) % 40))
    return jobs


def _render_job(job: _Job, config: SynthConfig, cameras: tuple[CameraProfile, ...]) -> bytes:
    person_key = job.key if job.kind == _REGULAR else -1  # one-off persons for distractors and junk
    rng_person = (
        person_rng(config.seed, person_key)
        if person_key > 0
        else np.random.default_rng([config.seed, _PERSON, 10_000 * job.kind, job.key])
    )
    person = sample_person(rng_person)
    camera = cameras[job.camera_id - 1]
    rng = np.random.default_rng([config.seed, _IMAGE, job.kind, job.key, job.camera_id, job.index])
    image = render_pedestrian_image(person, camera, rng, config.height, config.width, junk=job.kind == _JUNK)
    quality = int(np.clip(camera.jpeg_quality + rng.integers(-4, 5), 40, 98))
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class _Context:
    config: SynthConfig
    cameras: tuple[CameraProfile, ...]
    root: Path


_CONTEXT: list[_Context] = []  # set once per worker process by the pool initializer


def _init_worker(context: _Context) -> None:
    _CONTEXT[:] = [context]


def _write_job(job: _Job) -> str:
    context = _CONTEXT[0]
    data = _render_job(job, context.config, context.cameras)
    (context.root / job.subset / job.filename).write_bytes(data)
    return job.subset


def generate_market_dataset(
    out: str | Path, config: SynthConfig = SynthConfig(), workers: int | None = None, overwrite: bool = False
) -> dict[str, object]:
    """Render the dataset described by ``config`` into ``out`` (see the module docstring for the layout).

    Args:
        out: Output root; created if missing.
        config: Sizes and seed.
        workers: Worker processes; None means ``min(2, os.cpu_count())``. The output does not depend on it.
        overwrite: Delete the ``*.jpg`` files already in the three subset folders first; otherwise a
            non-empty subset folder is an error.

    Returns:
        The summary also written to ``out/synthetic.json``: settings, image counts per subset, seconds.
    """
    config.validate()
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    at_least("workers", workers, 1)
    root = Path(out)
    for subset in SUBSETS:
        folder = root / subset
        existing = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if existing and not overwrite:
            raise ValueError(
                f"{folder} already holds {len(existing)} images; choose another --out or --overwrite"
            )
        for path in existing:
            path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(config)
    cameras = camera_profiles(config)
    start = time.perf_counter()
    context = _Context(config=config, cameras=cameras, root=root)
    if workers == 1:
        _init_worker(context)
        subsets = list(track(map(_write_job, jobs), "synth", total=len(jobs)))
    else:
        with Pool(workers, initializer=_init_worker, initargs=(context,)) as pool:
            written = pool.imap_unordered(_write_job, jobs, chunksize=32)
            subsets = list(track(written, "synth", total=len(jobs)))
    seconds = time.perf_counter() - start
    summary: dict[str, object] = {
        "config": asdict(config) | {"train_identities": config.num_train},
        "images": {subset: subsets.count(subset) for subset in SUBSETS},
        "distractors": sum(job.kind == _DISTRACTOR for job in jobs),
        "junk": sum(job.kind == _JUNK for job in jobs),
        "workers": workers,
        "seconds": round(seconds, 2),
    }
    (root / "synthetic.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
