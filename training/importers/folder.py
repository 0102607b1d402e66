"""Writing an imported model into a model folder: checked graph, uncalibrated manifest, staged then moved.

Every importer hands over a function that writes ``embedding.onnx`` into a staging folder and checks it on
real images (parity with the source model at batch 1 and 7, or for ONNX files shape and finiteness); the
manifest then records the input contract, the checks' numbers and where the weights came from. A fresh
import has no thresholds: its scores mean nothing on the user's cameras until ``reid calibrate`` measures
them, so every scoring mode is written uncalibrated (``/search`` answers ``same_person: null``, ``/verify``
asks for a threshold).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from service.contract.manifest import (
    ImportSource,
    InputSpec,
    ModelManifest,
    Provenance,
    ScoringMode,
    file_entry,
    load,
    sha256_file,
)
from service.contract.parity import ParityReport
from service.contract.preprocess import PreprocessSpec, resize_normalize, stack_batch
from service.contract.scoring import SERVED_EMBEDDING_METRICS, higher_is_better
from service.contract.tensors import EMBEDDINGS, IMAGES
from training.export.exporter import library_versions
from training.export.onnx_io import DEFAULT_OPSET, export_onnx
from training.export.parity import PARITY_BATCHES, check_parity, parity_rule

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
EMBEDDING_FILE = "embedding.onnx"


@dataclass(frozen=True)
class ImportOptions:
    """What every ``reid models import`` format takes."""

    weights: Path
    output: Path
    height: int = 256
    width: int = 128
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str | None = None
    version: str = "1"
    force: bool = False

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(height=self.height, width=self.width, mean=self.mean, std=self.std)


@dataclass(frozen=True)
class WrittenGraph:
    """What an importer's writer reports: the embedding length and the checks' rule and numbers."""

    embedding_dim: int
    checks: ParityReport


#: Writes ``embedding.onnx`` into the folder and checks it on the preprocessed images (N × 3 × H × W).
GraphWriter = Callable[[Path, np.ndarray], WrittenGraph]


def render_pedestrians(count: int, seed: int = 0) -> list[Image.Image]:
    """``count`` different synthetic pedestrians (128×64 RGB), cameras in turn; no dataset needed."""
    from training.data.synthetic import (
        SynthConfig,
        camera_profiles,
        person_rng,
        render_pedestrian_image,
        sample_person,
    )

    cameras = camera_profiles(SynthConfig(seed=seed))
    people = [sample_person(person_rng(seed, i + 1)) for i in range(count)]
    return [
        render_pedestrian_image(person, cameras[i % len(cameras)], np.random.default_rng([seed, i]))
        for i, person in enumerate(people)
    ]


def sample_images(spec: PreprocessSpec, count: int = max(PARITY_BATCHES), seed: int = 0) -> np.ndarray:
    """Rendered pedestrians (:func:`render_pedestrians`), preprocessed exactly as the service does.

    Images, not noise: a graph that is wrong only on image-like inputs (saturated BN, a batch-specialised
    reshape) shows here.
    """
    return stack_batch([resize_normalize(image, spec) for image in render_pedestrians(count, seed)])


def uncalibrated_scoring() -> dict[str, ScoringMode]:
    """Every embedding scoring mode without thresholds (until ``reid calibrate``)."""
    return {m: ScoringMode(higher_is_better=higher_is_better(m)) for m in SERVED_EMBEDDING_METRICS}


def write_imported_folder(
    opts: ImportOptions, source: ImportSource, description: str, write_graph: GraphWriter
) -> ModelManifest:
    """Assemble the model folder in a staging directory and move it to ``opts.output`` once it validated.

    Raises:
        FileExistsError: ``opts.output`` exists and ``opts.force`` is not set.
        SourceError / ExportError: The importer's writer refused the source or its graph.
    """
    output = Path(opts.output)
    if output.exists() and not opts.force:
        raise FileExistsError(f"{output} already exists (pass --force to replace it)")
    spec = opts.spec
    images = sample_images(spec)
    staging = output.parent / f".{output.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        written = write_graph(staging, images)
        manifest = ModelManifest(
            name=opts.name or output.name,
            version=opts.version,
            kind="embedding",
            description=description,
            input=InputSpec(height=spec.height, width=spec.width, mean=spec.mean, std=spec.std),
            files={"embedding": file_entry(staging, EMBEDDING_FILE)},
            embedding_dim=written.embedding_dim,
            normalize_embeddings=False,
            default_metric="cosine",
            scoring=uncalibrated_scoring(),  # type: ignore[arg-type]
            parity=written.checks,
            provenance=Provenance(
                recipe=f"import:{source.format}",
                dataset="unknown (imported weights)",
                notes="Imported; uncalibrated until `reid calibrate --model … --root …` on your own data.",
                source=source,
            ),
            library_versions=library_versions(),
        )
        manifest.save(staging)
        load(staging)  # what the service will do: validate every field and checksum
        if output.exists():
            shutil.rmtree(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("imported %s into %s", source.file, output)
    return manifest


def import_source(fmt: str, weights: Path, arch: str | None = None) -> ImportSource:
    """The provenance entry of a source file (name and sha256)."""
    return ImportSource(format=fmt, arch=arch, file=weights.name, sha256=sha256_file(weights))  # type: ignore[arg-type]


def torch_graph_writer(model: nn.Module, opset: int = DEFAULT_OPSET) -> GraphWriter:
    """A writer that exports ``model`` (images → embeddings, eval mode) through the parity gate."""

    def write(folder: Path, images: np.ndarray) -> WrittenGraph:
        model.eval()
        path = export_onnx(
            model, (torch.from_numpy(images[:2]),), folder / EMBEDDING_FILE,
            input_names=[IMAGES], output_names=[EMBEDDINGS], opset=opset,
        )

        def reference(images: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return model(torch.from_numpy(images)).float().numpy()

        parity = check_parity(path, reference, {IMAGES: images}, fp16=False)
        dim = int(reference(images[:1]).shape[1])
        report = ParityReport(rule=parity_rule(fp16=False), outputs={"embedding": parity})
        return WrittenGraph(embedding_dim=dim, checks=report)

    return write
