"""Identity attributes of a synthetic pedestrian: what stays the same in every camera.

An identity is a :class:`PersonAttributes`: body proportions, skin and hair, upper garment (colour, pattern,
sleeves), lower garment (colour, kind), shoes and bag. Colours come from a small palette with skewed
frequencies (black, navy and grey shirts are common), so many people share a shirt colour and colour alone
cannot tell them apart; the identity lives in the *combination* and in the structure (stripes, emblem,
sleeves, skirt, bag, proportions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RGB = tuple[int, int, int]

#: clothing palette: (name, RGB, relative frequency). Dark colours dominate, as in street scenes.
CLOTHING_PALETTE: tuple[tuple[str, RGB, float], ...] = (
    ("black", (28, 28, 32), 0.15),
    ("navy", (32, 42, 88), 0.10),
    ("grey", (120, 122, 126), 0.10),
    ("white", (228, 228, 222), 0.09),
    ("beige", (196, 176, 138), 0.08),
    ("blue", (50, 96, 178), 0.08),
    ("red", (176, 36, 40), 0.08),
    ("green", (46, 106, 62), 0.07),
    ("brown", (104, 70, 44), 0.07),
    ("lightblue", (140, 180, 214), 0.06),
    ("yellow", (222, 190, 60), 0.06),
    ("pink", (214, 120, 160), 0.06),
)
SKIN_TONES: tuple[RGB, ...] = (
    (241, 204, 176),
    (224, 180, 140),
    (198, 146, 108),
    (150, 100, 70),
    (100, 66, 46),
)
HAIR_COLOURS: tuple[RGB, ...] = ((20, 18, 18), (54, 38, 28), (96, 66, 40), (190, 160, 100), (150, 150, 150))
HAIR_WEIGHTS = (0.45, 0.25, 0.15, 0.1, 0.05)

UPPER_PATTERNS = ("plain", "hstripes", "vstripes", "emblem", "two_tone", "jacket")
UPPER_PATTERN_WEIGHTS = (0.3, 0.15, 0.1, 0.17, 0.13, 0.15)
EMBLEM_SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SLEEVES = ("none", "short", "long")
SLEEVE_WEIGHTS = (0.1, 0.4, 0.5)
LOWER_KINDS = ("trousers", "shorts", "skirt")
LOWER_WEIGHTS = (0.65, 0.17, 0.18)
BAGS = ("none", "backpack", "handbag", "shoulder")
BAG_WEIGHTS = (0.4, 0.25, 0.15, 0.2)


@dataclass(frozen=True)
class PersonAttributes:
    """Everything that identifies one synthetic person (lengths are fractions of the person's height)."""

    head: float  # head height
    legs: float  # hip-to-sole length
    shoulders: float  # shoulder width
    hips: float  # hip width relative to the shoulders
    limb: float  # leg/arm thickness
    skin: RGB
    hair: RGB
    hair_long: bool
    cap: RGB | None  # a cap of this colour, or none
    upper: RGB
    upper_pattern: str
    upper_second: RGB  # stripe / emblem / second tone / inner shirt colour
    stripes: int
    emblem: str
    sleeves: str
    lower: RGB
    lower_kind: str
    skirt_length: float  # skirt hem as a fraction of the leg
    shoes: RGB
    bag: str
    bag_colour: RGB
    bag_side: int  # +1: the person's right, -1: left


def _palette_colour(rng: np.random.Generator, exclude: RGB | None = None) -> RGB:
    weights = np.array([w for _, _, w in CLOTHING_PALETTE])
    if exclude is not None:
        weights = np.where([c == exclude for _, c, _ in CLOTHING_PALETTE], 0.0, weights)
    colour = CLOTHING_PALETTE[int(rng.choice(len(CLOTHING_PALETTE), p=weights / weights.sum()))][1]
    return colour


def _jitter(rng: np.random.Generator, colour: RGB, amount: float, brightness: float = 0.0) -> RGB:
    """A per-identity shade of a palette colour (the same shirt colour is not bit-identical on two people)."""
    base = np.array(colour, dtype=float) * float(np.exp(rng.normal(0.0, brightness)))
    shifted = np.clip(base + rng.normal(0.0, amount, size=3), 0, 255)
    return (int(shifted[0]), int(shifted[1]), int(shifted[2]))


def sample_person(rng: np.random.Generator) -> PersonAttributes:
    """Draw one identity's attributes.

    Args:
        rng: Generator owned by this identity (derive it from the dataset seed and the person id).

    Returns:
        The identity's attributes.
    """
    upper_base = _palette_colour(rng)
    upper = _jitter(rng, upper_base, 12.0, brightness=0.25)
    second = _jitter(rng, _palette_colour(rng, exclude=upper_base), 12.0, brightness=0.25)
    lower = _jitter(rng, _palette_colour(rng), 12.0, brightness=0.25)
    shoes = _jitter(rng, _palette_colour(rng), 6.0)
    bag = BAGS[int(rng.choice(len(BAGS), p=BAG_WEIGHTS))]
    return PersonAttributes(
        head=float(rng.uniform(0.115, 0.145)),
        legs=float(rng.uniform(0.44, 0.52)),
        shoulders=float(rng.uniform(0.25, 0.33)),
        hips=float(rng.uniform(0.78, 1.02)),
        limb=float(rng.uniform(0.055, 0.08)),
        skin=_jitter(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 6.0),
        hair=_jitter(rng, HAIR_COLOURS[int(rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS))], 5.0),
        hair_long=bool(rng.random() < 0.35),
        cap=_jitter(rng, _palette_colour(rng), 6.0) if rng.random() < 0.12 else None,
        upper=upper,
        upper_pattern=UPPER_PATTERNS[int(rng.choice(len(UPPER_PATTERNS), p=UPPER_PATTERN_WEIGHTS))],
        upper_second=second,
        stripes=int(rng.integers(2, 5)),
        emblem=EMBLEM_SHAPES[int(rng.integers(len(EMBLEM_SHAPES)))],
        sleeves=SLEEVES[int(rng.choice(len(SLEEVES), p=SLEEVE_WEIGHTS))],
        lower=lower,
        lower_kind=LOWER_KINDS[int(rng.choice(len(LOWER_KINDS), p=LOWER_WEIGHTS))],
        skirt_length=float(rng.uniform(0.3, 0.7)),
        shoes=shoes,
        bag=bag,
        bag_colour=_jitter(rng, _palette_colour(rng), 12.0, brightness=0.25),
        bag_side=1 if rng.random() < 0.5 else -1,
    )
