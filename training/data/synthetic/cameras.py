"""Camera profiles: what one synthetic camera does to every image it takes.

A camera has a scene (wall and floor colours, a texture, clutter), a preferred distribution over viewpoints
(a corridor camera sees mostly backs and fronts, a street-corner camera mostly sides), a framing (person
scale and position jitter), optics (blur, sensor noise, JPEG quality), occluders (poles, boxes) and, above
all, its own illumination gain, colour cast and saturation. The cast and the background are what make a
plain colour histogram unreliable across cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from training.data.synthetic.attributes import RGB

VIEWS = ("front", "back", "left", "right")
TEXTURES = ("noise", "hstripes", "vstripes", "tiles")
#: probability that an image shows the camera's own wall / floor colour (else any scene colour)
OWN_SCENE_PROB = 0.4

#: muted scene colours: walls, pavements, shop fronts, vegetation.
SCENE_PALETTE: tuple[RGB, ...] = (
    (150, 150, 145),
    (110, 108, 104),
    (180, 170, 150),
    (90, 96, 110),
    (130, 120, 100),
    (70, 80, 70),
    (160, 140, 120),
    (200, 196, 188),
    (60, 60, 66),
    (120, 90, 70),
    (96, 120, 90),
    (140, 150, 170),
)


@dataclass(frozen=True)
class CameraProfile:
    """One camera's scene, viewpoint preference, framing, optics and colour response."""

    camera_id: int
    wall: RGB
    floor: RGB
    clutter: tuple[RGB, ...]
    texture: str
    horizon: float  # wall/floor boundary as a fraction of the image height
    view_probs: tuple[float, float, float, float]  # over VIEWS
    scale: float  # person height / image height
    gain: float
    cast: tuple[float, float, float]
    saturation: float
    blur: float  # Gaussian radius in output pixels
    noise: float  # sensor noise sigma in 0..255 units
    jpeg_quality: int
    occlusion_prob: float


def sample_camera(rng: np.random.Generator, camera_id: int) -> CameraProfile:
    """Draw one camera's profile (derive ``rng`` from the dataset seed and the camera id)."""
    picks = rng.choice(len(SCENE_PALETTE), size=5, replace=False)
    views = rng.dirichlet([1.2, 1.2, 0.8, 0.8])
    cast = np.exp(rng.normal(0.0, 0.035, size=3))
    cast = cast / cast.mean()
    return CameraProfile(
        camera_id=camera_id,
        wall=SCENE_PALETTE[int(picks[0])],
        floor=SCENE_PALETTE[int(picks[1])],
        clutter=tuple(SCENE_PALETTE[int(i)] for i in picks[2:]),
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        horizon=float(rng.uniform(0.45, 0.8)),
        view_probs=(float(views[0]), float(views[1]), float(views[2]), float(views[3])),
        scale=float(rng.uniform(0.88, 0.96)),
        gain=float(np.exp(rng.uniform(np.log(0.85), np.log(1.18)))),
        cast=(float(cast[0]), float(cast[1]), float(cast[2])),
        saturation=float(rng.uniform(0.9, 1.08)),
        blur=float(rng.uniform(0.0, 0.7)),
        noise=float(rng.uniform(1.0, 4.0)),
        jpeg_quality=int(rng.integers(70, 96)),
        occlusion_prob=float(rng.uniform(0.03, 0.2)),
    )


def _shade(colour: RGB, rng: np.random.Generator, amount: float) -> RGB:
    c = np.clip(np.array(colour, dtype=float) + rng.normal(0.0, amount, size=3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def render_background(
    camera: CameraProfile, rng: np.random.Generator, height: int, width: int
) -> Image.Image:
    """The camera's scene with per-image variation (texture phase, clutter layout, shade jitter)."""
    # a camera sees several spots (shop fronts, doors, pavement): its own wall/floor in 40 % of the images
    wall_rgb = (
        camera.wall if rng.random() < OWN_SCENE_PROB else SCENE_PALETTE[int(rng.integers(len(SCENE_PALETTE)))]
    )
    floor_rgb = (
        camera.floor
        if rng.random() < OWN_SCENE_PROB
        else SCENE_PALETTE[int(rng.integers(len(SCENE_PALETTE)))]
    )
    wall = np.array(_shade(wall_rgb, rng, 14.0), dtype=np.float32)
    floor = np.array(_shade(floor_rgb, rng, 14.0), dtype=np.float32)
    horizon = int(height * (camera.horizon + rng.uniform(-0.05, 0.05)))
    arr = np.empty((height, width, 3), dtype=np.float32)
    arr[:horizon] = wall
    arr[horizon:] = floor
    yy, xx = np.mgrid[0:height, 0:width]
    period = int(rng.integers(10, 24))
    if camera.texture == "hstripes":
        arr[((yy + int(rng.integers(period))) // period) % 2 == 1] *= 0.88
    elif camera.texture == "vstripes":
        arr[:horizon][((xx[:horizon] + int(rng.integers(period))) // period) % 2 == 1] *= 0.86
    elif camera.texture == "tiles":
        lines = ((yy % period) < 2) | (((xx + int(rng.integers(period))) % period) < 2)
        arr[horizon:][lines[horizon:]] *= 0.75
    # low-frequency blotches (mostly brightness, a little chroma) + fine grain: backgrounds are never flat
    grid = (height // 16 + 2, width // 16 + 2)
    coarse = rng.normal(0.0, 9.0, size=(*grid, 1)) + rng.normal(0.0, 3.0, size=(*grid, 3))
    smooth = Image.fromarray(np.clip(128.0 + coarse, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    arr += np.asarray(smooth, dtype=np.float32) - 128.0
    arr += rng.normal(0.0, 4.0, size=arr.shape).astype(np.float32)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):
        colour = _shade(camera.clutter[int(rng.integers(len(camera.clutter)))], rng, 15.0)
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.1, 0.9) * height
        w, h = rng.uniform(0.15, 0.6) * width, rng.uniform(0.08, 0.45) * height
        if rng.random() < 0.6:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
    return image


def draw_occluder(image: Image.Image, camera: CameraProfile, rng: np.random.Generator) -> None:
    """Draw a pole or a box (bench, bin, car bonnet) in front of the person, in place."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    colour = _shade(camera.clutter[int(rng.integers(len(camera.clutter)))], rng, 20.0)
    if rng.random() < 0.5:
        x0 = rng.uniform(0.0, 0.85) * width
        draw.rectangle((x0, 0, x0 + rng.uniform(0.08, 0.18) * width, height), fill=colour)
    else:
        top = rng.uniform(0.6, 0.85) * height
        x0 = rng.uniform(-0.5, 0.5) * width
        draw.rectangle((x0, top, x0 + rng.uniform(0.5, 1.0) * width, height), fill=colour)


def apply_camera_response(image: Image.Image, camera: CameraProfile, rng: np.random.Generator) -> Image.Image:
    """Gain, colour cast and saturation (camera + small per-image jitter), then sensor noise."""
    arr = np.asarray(image, dtype=np.float32)
    gain = camera.gain * float(np.exp(rng.normal(0.0, 0.08)))
    cast = np.array(camera.cast, dtype=np.float32) * np.exp(rng.normal(0.0, 0.03, size=3)).astype(np.float32)
    arr = arr * (gain * cast)
    grey = arr.mean(axis=2, keepdims=True)
    saturation = camera.saturation * float(np.exp(rng.normal(0.0, 0.06)))
    arr = grey + saturation * (arr - grey)
    arr += rng.normal(0.0, camera.noise, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
