"""Drawing one synthetic pedestrian with Pillow polygons and ellipses.

The person is drawn upright in a box (top ``y0``, centre ``cx``, height ``size`` pixels) from one of four
viewpoints. What is visible depends on the viewpoint, as with real people: a chest emblem shows only from the
front, a backpack is a big rectangle from the back, a thin slab from the side and only two straps from the
front; a handbag hidden behind the body from one side shows from the other; the far limbs of a side view are
shaded darker and drawn first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from PIL import ImageDraw

from training.data.synthetic.attributes import RGB, PersonAttributes

Point = tuple[float, float]
ToPixels = Callable[[float], float]  # fraction of the person's height -> image y


def _darker(colour: RGB, factor: float = 0.78) -> RGB:
    return (int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor))


def _limb(p0: Point, p1: Point, w0: float, w1: float) -> list[Point]:
    """Quadrilateral of a limb from ``p0`` (width ``w0``) to ``p1`` (width ``w1``)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    norm = max(float(np.hypot(dx, dy)), 1e-6)
    nx, ny = -dy / norm, dx / norm
    return [
        (p0[0] + nx * w0 / 2, p0[1] + ny * w0 / 2),
        (p1[0] + nx * w1 / 2, p1[1] + ny * w1 / 2),
        (p1[0] - nx * w1 / 2, p1[1] - ny * w1 / 2),
        (p0[0] - nx * w0 / 2, p0[1] - ny * w0 / 2),
    ]


def _lerp(a: Point, b: Point, t: float) -> Point:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _sub_limb(p0: Point, p1: Point, w0: float, w1: float, t0: float, t1: float) -> list[Point]:
    """The part of a limb between fractions ``t0`` and ``t1`` of its length."""
    return _limb(_lerp(p0, p1, t0), _lerp(p0, p1, t1), w0 + (w1 - w0) * t0, w0 + (w1 - w0) * t1)


def _quad_band(quad: Sequence[Point], t0: float, t1: float, vertical: bool = False) -> list[Point]:
    """A band of the quadrilateral (top-left, top-right, bottom-right, bottom-left) between t0 and t1.

    Horizontal bands run from the top edge (t=0) to the bottom edge; vertical bands from left to right.
    """
    tl, tr, br, bl = quad
    if vertical:
        return [_lerp(tl, tr, t0), _lerp(tl, tr, t1), _lerp(bl, br, t1), _lerp(bl, br, t0)]
    return [_lerp(tl, bl, t0), _lerp(tr, br, t0), _lerp(tr, br, t1), _lerp(tl, bl, t1)]


def _emblem(draw: ImageDraw.ImageDraw, shape: str, centre: Point, radius: float, colour: RGB) -> None:
    x, y, r = centre[0], centre[1], radius
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    elif shape == "square":
        draw.rectangle((x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85), fill=colour)
    elif shape == "triangle":
        draw.polygon([(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=colour)
    else:  # cross
        t = r * 0.38
        draw.rectangle((x - t, y - r, x + t, y + r), fill=colour)
        draw.rectangle((x - r, y - t, x + r, y + t), fill=colour)


def draw_person(
    draw: ImageDraw.ImageDraw,
    person: PersonAttributes,
    view: str,
    cx: float,
    y0: float,
    size: float,
    rng: np.random.Generator,
) -> None:
    """Draw ``person`` seen from ``view`` ("front", "back", "left", "right") into ``draw``.

    Args:
        draw: Target drawing context.
        person: The identity's attributes.
        view: Viewpoint.
        cx: Horizontal centre of the person in pixels.
        y0: Top of the head in pixels.
        size: Person height in pixels (top of head to soles).
        rng: Per-image generator (gait phase, arm swing, small pose jitter).
    """
    if view not in ("front", "back", "left", "right"):
        raise ValueError(f"view must be one of front/back/left/right, got {view!r}")
    side = view in ("left", "right")
    direction = 1.0 if view == "right" else -1.0  # facing direction in image x for side views

    def px(dx: float) -> float:
        return cx + dx * size

    def py(fy: float) -> float:
        return y0 + fy * size

    head, limb = person.head, person.limb
    shoulder_y, hip_y, sole_y = head + 0.035, 1.0 - person.legs, 0.985
    half_sh = person.shoulders / 2 * (0.7 if side else 1.0) * float(rng.uniform(0.95, 1.05))
    half_hip = half_sh * person.hips
    torso = [
        (px(-half_sh), py(shoulder_y)),
        (px(half_sh), py(shoulder_y)),
        (px(half_hip), py(hip_y)),
        (px(-half_hip), py(hip_y)),
    ]
    lean = direction * 0.015 * size if side else 0.0
    torso = [(x + lean * (1 - i // 2), y) for i, (x, y) in enumerate(torso)]
    far = _darker

    # ----- legs (and, for side views, the far arm) -------------------------------------------------------
    if side:
        stride = float(rng.uniform(-1.0, 1.0)) * 0.11
        feet = [px(direction * stride), px(-direction * stride)]
        hips_x = [px(0.0), px(0.0)]
    else:
        spread = float(rng.uniform(0.0, 0.03))
        feet = [px(-half_hip / 2 - spread), px(half_hip / 2 + spread)]
        hips_x = [px(-half_hip / 2), px(half_hip / 2)]
    leg_w0, leg_w1 = limb * size * 1.3, limb * size * 0.85
    lower_t = {"trousers": 0.97, "shorts": 0.4, "skirt": 0.0}[person.lower_kind]
    for i in range(2):
        shade = far if (side and i == 1) else (lambda c: c)
        hip, foot = (hips_x[i], py(hip_y - 0.02)), (feet[i], py(sole_y - 0.02))
        draw.polygon(_limb(hip, foot, leg_w0, leg_w1), fill=shade(person.skin))
        if lower_t > 0:
            draw.polygon(_sub_limb(hip, foot, leg_w0, leg_w1, 0.0, lower_t), fill=shade(person.lower))
        sw = limb * size * 1.5
        sx = foot[0] + (direction * sw * 0.3 if side else 0.0)
        draw.ellipse((sx - sw / 2, py(sole_y - 0.035), sx + sw / 2, py(sole_y)), fill=shade(person.shoes))

    arm_w0, arm_w1 = limb * size * 0.95, limb * size * 0.75
    sleeve_t = {"none": 0.0, "short": 0.38, "long": 0.93}[person.sleeves]
    sleeve_colour = person.upper_second if person.upper_pattern == "two_tone" else person.upper
    swing = float(rng.uniform(-1.0, 1.0)) * 0.09

    def arm(shoulder: Point, hand: Point, shade_far: bool) -> None:
        shade = far if shade_far else (lambda c: c)
        draw.polygon(_limb(shoulder, hand, arm_w0, arm_w1), fill=shade(person.skin))
        if sleeve_t > 0:
            draw.polygon(_sub_limb(shoulder, hand, arm_w0, arm_w1, 0.0, sleeve_t), fill=shade(sleeve_colour))
        r = arm_w1 * 0.6
        draw.ellipse((hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r), fill=shade(person.skin))

    hand_y = py(hip_y + 0.06)
    bag_near = side and person.bag_side == (-1 if direction > 0 else 1)
    bag_img_side = -person.bag_side if view == "front" else person.bag_side  # image x side in front/back
    if side:
        arm((px(0.0), py(shoulder_y + 0.01)), (px(-direction * swing), hand_y), True)
        if person.bag in ("handbag", "shoulder") and not bag_near:
            _draw_side_bag(draw, person, px(-0.02 * direction), py, size)

    # ----- long hair behind the body (front view) ------------------------------------------------------
    head_w = head * 0.78 * size
    head_box = (cx - head_w / 2 + lean, py(0.0), cx + head_w / 2 + lean, py(head))
    if person.hair_long and view == "front":
        draw.rectangle(
            (head_box[0] - head_w * 0.12, py(head * 0.4), head_box[2] + head_w * 0.12, py(shoulder_y + 0.08)),
            fill=person.hair,
        )

    # ----- torso with its pattern ------------------------------------------------------------------------
    draw.polygon(
        [
            (hips_x[0] - leg_w0 / 2, py(hip_y - 0.03)),
            (hips_x[1] + leg_w0 / 2, py(hip_y - 0.03)),
            (hips_x[1] + leg_w0 / 2, py(hip_y + 0.05)),
            (hips_x[0] - leg_w0 / 2, py(hip_y + 0.05)),
        ]
        if not side
        else _limb((px(0), py(hip_y - 0.03)), (px(0), py(hip_y + 0.05)), leg_w0, leg_w0),
        fill=person.lower,
    )
    if person.lower_kind == "skirt":
        hem = hip_y + person.legs * person.skirt_length
        flare = (half_hip + 0.03 + person.skirt_length * 0.08) * (0.8 if side else 1.0)
        draw.polygon(
            [
                (px(-half_hip) + lean, py(hip_y - 0.02)),
                (px(half_hip) + lean, py(hip_y - 0.02)),
                (px(flare), py(hem)),
                (px(-flare), py(hem)),
            ],
            fill=person.lower,
        )
    draw.rectangle(
        (cx - head_w * 0.22 + lean, py(head * 0.8), cx + head_w * 0.22 + lean, py(shoulder_y + 0.01)),
        fill=person.skin,
    )
    draw.polygon(torso, fill=person.upper)
    pattern = person.upper_pattern
    if pattern == "hstripes":
        n = person.stripes + 1
        for k in range(n):
            draw.polygon(
                _quad_band(torso, (2 * k + 1) / (2 * n + 1), (2 * k + 2) / (2 * n + 1)),
                fill=person.upper_second,
            )
    elif pattern == "vstripes":
        n = person.stripes + 1 if not side else 2
        for k in range(n):
            draw.polygon(
                _quad_band(torso, (2 * k + 1) / (2 * n + 1), (2 * k + 2) / (2 * n + 1), vertical=True),
                fill=person.upper_second,
            )
    elif pattern == "two_tone":
        draw.polygon(_quad_band(torso, 0.0, 0.42), fill=person.upper_second)
    elif pattern == "jacket" and view == "front":
        draw.polygon(_quad_band(torso, 0.36, 0.64, vertical=True), fill=person.upper_second)
    elif pattern == "jacket" and side:
        t0, t1 = (0.72, 0.9) if direction > 0 else (0.1, 0.28)
        draw.polygon(_quad_band(torso, t0, t1, vertical=True), fill=person.upper_second)
    elif pattern == "emblem" and view == "front":
        _emblem(draw, person.emblem, (cx, py(shoulder_y + 0.1)), 0.055 * size, person.upper_second)

    # ----- bags and arms ---------------------------------------------------------------------------------
    bag = person.bag
    if bag == "backpack":
        if view == "back":
            draw.rectangle(
                (px(-half_sh * 0.78), py(shoulder_y + 0.02), px(half_sh * 0.78), py(shoulder_y + 0.25)),
                fill=person.bag_colour,
            )
        elif view == "front":
            for s in (-1, 1):
                draw.polygon(
                    _limb(
                        (px(s * half_sh * 0.62), py(shoulder_y)),
                        (px(s * half_sh * 0.55), py(shoulder_y + 0.2)),
                        0.025 * size,
                        0.025 * size,
                    ),
                    fill=person.bag_colour,
                )
        else:
            back = px(-direction * half_sh) + lean
            draw.rectangle(
                (
                    min(back, back - direction * 0.08 * size),
                    py(shoulder_y + 0.02),
                    max(back, back - direction * 0.08 * size),
                    py(shoulder_y + 0.24),
                ),
                fill=person.bag_colour,
            )
            draw.polygon(
                _limb(
                    (px(-direction * half_sh * 0.6), py(shoulder_y)),
                    (px(-direction * half_sh * 0.2), py(shoulder_y + 0.18)),
                    0.02 * size,
                    0.02 * size,
                ),
                fill=person.bag_colour,
            )
    if bag == "shoulder" and not side:
        s = bag_img_side
        draw.polygon(
            _limb(
                (px(-s * half_sh * 0.7), py(shoulder_y)),
                (px(s * half_hip * 0.9), py(hip_y - 0.02)),
                0.022 * size,
                0.022 * size,
            ),
            fill=_darker(person.bag_colour, 0.85),
        )
    if side:
        arm((px(0.0), py(shoulder_y + 0.01)), (px(direction * swing), hand_y), False)
        if bag in ("handbag", "shoulder") and bag_near:
            _draw_side_bag(draw, person, px(0.03 * direction), py, size)
        if bag == "shoulder" and bag_near:
            draw.line(
                (px(0.0), py(shoulder_y), px(0.03 * direction), py(hip_y - 0.02)),
                fill=person.bag_colour,
                width=max(1, int(0.02 * size)),
            )
    else:
        for s in (-1, 1):
            arm(
                (px(s * (half_sh - limb * 0.4)), py(shoulder_y + 0.015)),
                (px(s * (half_sh + 0.015 + swing * 0.2)), hand_y),
                False,
            )
        if bag == "handbag":
            hx = px(bag_img_side * (half_sh + 0.02))
            draw.rectangle(
                (hx - 0.045 * size, py(hip_y + 0.07), hx + 0.045 * size, py(hip_y + 0.15)),
                fill=person.bag_colour,
            )
        elif bag == "shoulder":
            hx = px(bag_img_side * (half_hip + 0.02))
            draw.rectangle(
                (hx - 0.05 * size, py(hip_y - 0.05), hx + 0.05 * size, py(hip_y + 0.05)),
                fill=person.bag_colour,
            )

    _draw_head(draw, person, view, head_box, direction, py, shoulder_y)


def _draw_side_bag(
    draw: ImageDraw.ImageDraw, person: PersonAttributes, x: float, py: ToPixels, size: float
) -> None:
    top = 1.0 - person.legs + (0.07 if person.bag == "handbag" else -0.05)
    draw.rectangle((x - 0.045 * size, py(top), x + 0.045 * size, py(top + 0.09)), fill=person.bag_colour)


def _draw_head(
    draw: ImageDraw.ImageDraw,
    person: PersonAttributes,
    view: str,
    box: tuple[float, float, float, float],
    direction: float,
    py: ToPixels,
    shoulder_y: float,
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    hair = person.hair
    if view == "back":
        draw.ellipse(box, fill=hair)
        if person.hair_long:
            draw.rectangle((x0 - w * 0.05, y0 + h * 0.5, x1 + w * 0.05, py(shoulder_y + 0.1)), fill=hair)
    elif view == "front":
        draw.ellipse(box, fill=person.skin)
        draw.chord((x0 - w * 0.04, y0 - h * 0.04, x1 + w * 0.04, y1 - h * 0.25), 180, 360, fill=hair)
        eye_y, r = y0 + h * 0.5, max(w * 0.06, 0.6)
        for ex in (x0 + w * 0.32, x0 + w * 0.68):
            draw.ellipse((ex - r, eye_y - r, ex + r, eye_y + r), fill=(40, 30, 30))
    else:
        draw.ellipse(box, fill=person.skin)
        back_start, back_end = (90, 270) if direction > 0 else (270, 90)
        draw.pieslice(
            (x0 - w * 0.03, y0 - h * 0.03, x1 + w * 0.03, y1 - h * 0.1), back_start, back_end, fill=hair
        )
        draw.chord((x0 - w * 0.03, y0 - h * 0.04, x1 + w * 0.03, y1 - h * 0.3), 180, 360, fill=hair)
        if person.hair_long:
            bx = x0 if direction > 0 else x1 - w * 0.45
            draw.rectangle((bx, y0 + h * 0.4, bx + w * 0.45, py(shoulder_y + 0.08)), fill=hair)
    if person.cap is not None:
        draw.chord((x0 - w * 0.06, y0 - h * 0.08, x1 + w * 0.06, y1 - h * 0.3), 180, 360, fill=person.cap)
        if view != "back":
            brim = (
                (x0 - w * 0.1, x1 + w * 0.1)
                if view == "front"
                else ((x0 + w * 0.5, x1 + w * 0.4) if direction > 0 else (x0 - w * 0.4, x1 - w * 0.5))
            )
            draw.rectangle((brim[0], y0 + h * 0.28, brim[1], y0 + h * 0.36), fill=_darker(person.cap))
