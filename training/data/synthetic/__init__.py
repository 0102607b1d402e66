"""Synthetic pedestrians in the Market-1501 layout: the data that tests, demos and benchmarks train on.

No real re-ID dataset can be downloaded here, so :func:`generate_market_dataset` draws one. An identity is a
set of attributes (proportions, skin, hair, garments with patterns, shoes, bag) kept in every camera; a
camera adds its own scene, viewpoint preference, framing, occluders, blur, noise, JPEG quality and, above
all, its own illumination gain and colour cast. The identity therefore lives in shape and structure plus
colour *combinations*, while plain colour statistics drift from camera to camera: a colour histogram stays
weak (see ``reid baseline``) and a small CNN has something to learn.

Default benchmark (``reid synth --out DIR``): 500 identities (300 train, 200 test), 4 cameras, 4 images per
camera, 128x64 JPEG: 4,800 train, 800 query and 2,400 + 120 distractor + 48 junk gallery images; about
42 CPU-seconds to generate. Measured on seed 0: the colour-histogram baseline (``reid baseline``) reaches
rank-1 18.2 % / mAP 9.3 %; an OSNet x0.25 trained for 8 epochs (600 P=16 x K=4 batches, softmax + triplet)
reaches rank-1 78.6 % / mAP 58.4 %.
"""

from training.data.synthetic.attributes import PersonAttributes, sample_person
from training.data.synthetic.cameras import CameraProfile, sample_camera
from training.data.synthetic.market import (
    SUBSETS,
    SynthConfig,
    camera_profiles,
    generate_market_dataset,
    person_rng,
    plan_jobs,
    render_pedestrian_image,
)

__all__ = [
    "SUBSETS",
    "CameraProfile",
    "PersonAttributes",
    "SynthConfig",
    "camera_profiles",
    "generate_market_dataset",
    "person_rng",
    "plan_jobs",
    "render_pedestrian_image",
    "sample_camera",
    "sample_person",
]
