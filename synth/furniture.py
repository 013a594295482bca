"""Random furniture built from boxes and cylinders, set against the walls or standing free, never overlapping.

Sizes are metres in scene.py's world frame; each piece is built in its own frame (front towards -y) and
then turned and moved into place.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synth.scene import (
    FABRICS, NEUTRALS, VIVID, WALL_X0, WALL_X1, WALL_Y1, WOODS, Box, Cylinder, Material, noise_seed, pick_colour,
)


def sample_furniture(rng: np.random.Generator, size, camera_position) -> list:
    """Primitives for several pieces against the walls and several standing free, none overlapping or within
    0.5 m of the camera. Each piece gets a few tries at a free spot before it is dropped."""
    width, length, _ = size
    placed, primitives = [], []
    for _ in range(rng.integers(4, 11)):
        half, parts = _WALL_PIECES[rng.choice(len(_WALL_PIECES), p=_WALL_WEIGHTS)](rng)
        for _ in range(4):
            wall = rng.choice([WALL_X0, WALL_X1, WALL_Y1], p=[0.3, 0.3, 0.4])
            span = length if wall in (WALL_X0, WALL_X1) else width
            if 2 * half[0] > span - 0.2:
                continue
            s, inset = rng.uniform(half[0] + 0.05, span - half[0] - 0.05), half[1] + 0.02
            centre, yaw = {
                WALL_X0: ((inset, s), np.pi / 2),
                WALL_X1: ((width - inset, s), -np.pi / 2),
                WALL_Y1: ((s, length - inset), 0.0),
            }[wall]
            yaw += np.radians(rng.uniform(-2, 2))
            if _place(parts, half, centre, yaw, size, camera_position, placed, primitives):
                break
    y_near = camera_position[1] + 0.8
    for _ in range(rng.integers(3, 11) if y_near < length - 0.4 else 0):
        half, parts = _FREE_PIECES[rng.choice(len(_FREE_PIECES), p=_FREE_WEIGHTS)](rng)
        for _ in range(4):
            centre = (rng.uniform(0.4, width - 0.4), rng.uniform(y_near, length - 0.4))
            if _place(parts, half, centre, rng.uniform(0, 2 * np.pi), size, camera_position, placed, primitives):
                break
    return primitives


def _place(parts, half, centre, yaw, size, camera_position, placed: list, primitives: list) -> bool:
    """Add a piece's parts at centre, turned by yaw, unless its footprint leaves the room, overlaps one
    already placed, or comes within 0.5 m of the camera. Returns whether it was added."""
    c, s = abs(np.cos(yaw)), abs(np.sin(yaw))
    ex, ey = c * half[0] + s * half[1], s * half[0] + c * half[1]
    box = (centre[0] - ex, centre[1] - ey, centre[0] + ex, centre[1] + ey)
    inside = box[0] > 0 and box[1] > 0 and box[2] < size[0] and box[3] < size[1]
    overlaps = any(
        box[0] < b[2] + 0.05 and b[0] < box[2] + 0.05 and box[1] < b[3] + 0.05 and b[1] < box[3] + 0.05 for b in placed
    )
    near_x = max(box[0] - camera_position[0], camera_position[0] - box[2], 0.0)
    near_y = max(box[1] - camera_position[1], camera_position[1] - box[3], 0.0)
    if not inside or overlaps or np.hypot(near_x, near_y) < 0.5:
        return False
    placed.append(box)
    primitives.extend(_moved(parts, centre, yaw))
    return True


def _moved(parts, centre, yaw: float) -> list:
    """Parts given in a piece's own frame, turned by yaw about the vertical and moved to centre (x, y)."""
    c, s = np.cos(yaw), np.sin(yaw)
    moved = []
    for part in parts:
        x, y = part.centre_xy_m
        xy = (centre[0] + c * x - s * y, centre[1] + s * x + c * y)
        if isinstance(part, Box):
            moved.append(dataclasses.replace(part, centre_xy_m=xy, yaw_rad=part.yaw_rad + yaw))
        else:
            moved.append(dataclasses.replace(part, centre_xy_m=xy))
    return moved


# Each piece builder returns (footprint half sizes (hx, hy), parts in the piece's frame: front is -y, back +y).

def _legs(w: float, d: float, top: float, thickness: float, material: Material) -> list:
    inset = 0.03 + thickness / 2
    return [
        Box((sx * (w / 2 - inset), sy * (d / 2 - inset)), (thickness / 2, thickness / 2), (0.0, top), 0.0, material)
        for sx in (-1, 1) for sy in (-1, 1)
    ]


def _wood_or_paint(rng: np.random.Generator) -> Material:
    """Furniture finish: bare wood with its grain, or plain paint."""
    if rng.random() < 0.6:
        return Material(pick_colour(rng, WOODS), "wood", noise_seed(rng))
    return Material(pick_colour(rng, NEUTRALS), "plain", noise_seed(rng))


def _table(rng: np.random.Generator) -> tuple:
    """A table with a few small things on it."""
    w, d, h = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.7, 0.78)
    wood = _wood_or_paint(rng)
    parts = [Box((0.0, 0.0), (w / 2, d / 2), (h - 0.04, h), 0.0, wood)]
    parts += _legs(w, d, h - 0.04, rng.uniform(0.04, 0.07), wood)
    parts += _tabletop_items(rng, w, d, h)
    return (w / 2, d / 2), parts


def _tabletop_items(rng: np.random.Generator, w: float, d: float, top: float) -> list:
    items = []
    for _ in range(rng.integers(0, 4)):
        x, y = rng.uniform(-0.4, 0.4) * w, rng.uniform(-0.35, 0.35) * d
        material = Material(pick_colour(rng, VIVID + NEUTRALS, 0.1), "plain", noise_seed(rng))
        if rng.random() < 0.5:
            items.append(Cylinder((x, y), rng.uniform(0.03, 0.08), (top, top + rng.uniform(0.08, 0.3)), material))
        else:
            half = (rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.12))
            items.append(Box((x, y), half, (top, top + rng.uniform(0.03, 0.2)), rng.uniform(0, np.pi), material))
    return items


def _chair_parts(rng: np.random.Generator, material: Material) -> tuple:
    w = rng.uniform(0.4, 0.5)
    seat = rng.uniform(0.42, 0.48)
    back = rng.uniform(0.8, 0.95)
    parts = [Box((0.0, 0.0), (w / 2, w / 2), (seat - 0.05, seat), 0.0, material)]
    parts += _legs(w, w, seat - 0.05, 0.035, material)
    parts.append(Box((0.0, w / 2 - 0.02), (w / 2, 0.02), (seat, back), 0.0, material))
    return (w / 2, w / 2), parts


def _chair(rng: np.random.Generator) -> tuple:
    return _chair_parts(rng, _wood_or_paint(rng))


def _dining_set(rng: np.random.Generator) -> tuple:
    """A table with chairs pulled up to its long sides, each turned to face it."""
    (hx, hy), parts = _table(rng)
    material = _wood_or_paint(rng)
    reach = hy
    for side in (-1, 1):
        spots = [0.0] if hx < 0.55 or rng.random() < 0.5 else [-0.5 * hx, 0.5 * hx]
        for x in spots:
            (ch, _), chair = _chair_parts(rng, material)
            yaw = (0.0 if side > 0 else np.pi) + np.radians(rng.uniform(-15, 15))
            centre = (x, side * (hy + ch * rng.uniform(0.1, 0.9)))
            reach = max(reach, abs(centre[1]) + ch * 1.2)
            parts += _moved(chair, centre, yaw)
    return (hx + 0.1, reach), parts


def _desk(rng: np.random.Generator) -> tuple:
    """A desk against a wall, sometimes with a monitor on it."""
    w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.75), rng.uniform(0.72, 0.76)
    wood = _wood_or_paint(rng)
    parts = [Box((0.0, 0.0), (w / 2, d / 2), (h - 0.03, h), 0.0, wood)] + _legs(w, d, h - 0.03, 0.05, wood)
    if rng.random() < 0.6:
        sw = rng.uniform(0.25, 0.35)
        screen = Material((0.05, 0.05, 0.06), "screen", drops_depth=rng.random() < 0.5)
        parts.append(Box((0.0, d / 4), (sw, 0.02), (h + 0.1, h + 0.1 + sw * 1.2), 0.0, screen))
        parts.append(Box((0.0, d / 4 + 0.05), (0.04, 0.04), (h, h + 0.12), 0.0, Material((0.05, 0.05, 0.06))))
    parts += _tabletop_items(rng, w * 0.6, d * 0.5, h)
    return (w / 2, d / 2), parts


def _cabinet(rng: np.random.Generator) -> tuple:
    """A cabinet, dresser or wardrobe: a box whose front has doors or drawers."""
    w, d, h = rng.uniform(0.4, 1.4), rng.uniform(0.35, 0.6), rng.choice([rng.uniform(0.6, 1.0), rng.uniform(1.6, 2.1)])
    material = Material(pick_colour(rng, WOODS + NEUTRALS), "panels", noise_seed(rng))
    return (w / 2, d / 2), [Box((0.0, 0.0), (w / 2, d / 2), (0.0, h), 0.0, material)]


def _wall_shelf(rng: np.random.Generator) -> tuple:
    """A shelf fixed to the wall at chest height or above, with a few things on it."""
    w, d, h = rng.uniform(0.6, 1.4), rng.uniform(0.2, 0.3), rng.uniform(1.1, 1.8)
    wood = _wood_or_paint(rng)
    parts = [Box((0.0, 0.0), (w / 2, d / 2), (h - 0.03, h), 0.0, wood)] + _tabletop_items(rng, w, d * 0.6, h)
    return (w / 2, d / 2), parts


def _bookcase(rng: np.random.Generator) -> tuple:
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(1.2, 2.0)
    material = Material(pick_colour(rng, WOODS + NEUTRALS[:2]), "books", noise_seed(rng))
    return (w / 2, d / 2), [Box((0.0, 0.0), (w / 2, d / 2), (0.0, h), 0.0, material)]


def _bed(rng: np.random.Generator) -> tuple:
    """A bed, headboard against the wall: base, mattress with blanket and sheet, pillows."""
    w, d = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.1)
    base_h, top = rng.uniform(0.2, 0.35), rng.uniform(0.45, 0.6)
    frame = _wood_or_paint(rng)
    bedding = Material(
        pick_colour(rng, FABRICS + VIVID[:3]), "bedding", noise_seed(rng), colour2=pick_colour(rng, NEUTRALS[:1])
    )
    parts = [
        Box((0.0, 0.0), (w / 2, d / 2), (0.0, base_h), 0.0, frame),
        Box((0.0, -0.01), (w / 2 - 0.02, d / 2 - 0.04), (base_h, top), 0.0, bedding),
        Box((0.0, d / 2 - 0.03), (w / 2 + 0.03, 0.03), (0.0, top + rng.uniform(0.3, 0.6)), 0.0, frame),
    ]
    pillow = Material(pick_colour(rng, NEUTRALS[:1] + FABRICS, 0.05), "fabric", noise_seed(rng))
    count = 1 if w < 1.2 else 2
    for i in range(count):
        x = (i - (count - 1) / 2) * w / count
        half = (w / count / 2 - 0.08, 0.18)
        parts.append(Box((x, d / 2 - 0.3), half, (top, top + 0.12), rng.uniform(-0.1, 0.1), pillow))
    return (w / 2 + 0.03, d / 2), parts


def _sofa(rng: np.random.Generator) -> tuple:
    """A sofa, back to the wall: seat, back, arms."""
    w, d = rng.uniform(1.4, 2.2), rng.uniform(0.8, 0.95)
    seat, back, arm = rng.uniform(0.4, 0.46), rng.uniform(0.75, 0.9), rng.uniform(0.55, 0.65)
    fabric = Material(pick_colour(rng, FABRICS), "fabric", noise_seed(rng))
    parts = [
        Box((0.0, 0.0), (w / 2, d / 2), (0.0, seat), 0.0, fabric),
        Box((0.0, d / 2 - 0.1), (w / 2, 0.1), (seat, back), 0.0, fabric),
    ]
    parts += [Box((sx * (w / 2 - 0.08), 0.0), (0.08, d / 2), (seat, arm), 0.0, fabric) for sx in (-1, 1)]
    return (w / 2, d / 2), parts


def _tv_stand(rng: np.random.Generator) -> tuple:
    """A low cabinet with a TV on it."""
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.35, 0.5), rng.uniform(0.4, 0.6)
    material = Material(pick_colour(rng, WOODS + NEUTRALS), "panels", noise_seed(rng))
    tv_w = min(w * 0.45, rng.uniform(0.4, 0.7))
    screen = Material((0.04, 0.04, 0.05), "screen", drops_depth=rng.random() < 0.5)  # glossy: often no depth
    parts = [
        Box((0.0, 0.0), (w / 2, d / 2), (0.0, h), 0.0, material),
        Box((0.0, 0.05), (tv_w, 0.03), (h + 0.06, h + 0.06 + tv_w * 1.15), 0.0, screen),
        Box((0.0, 0.05), (0.15, 0.08), (h, h + 0.06), 0.0, Material((0.04, 0.04, 0.05))),
    ]
    return (w / 2, d / 2), parts


def _boxes(rng: np.random.Generator) -> tuple:
    """One cardboard box, sometimes with a smaller one stacked on it."""
    cardboard = Material(pick_colour(rng, ((0.62, 0.45, 0.28), (0.55, 0.40, 0.25)), 0.05), "cardboard", noise_seed(rng))
    hx, hy, h = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.6)
    parts = [Box((0.0, 0.0), (hx, hy), (0.0, h), 0.0, cardboard)]
    if rng.random() < 0.4:
        scale = rng.uniform(0.5, 0.9)
        parts.append(Box((0.0, 0.0), (hx * scale, hy * scale), (h, h + h * scale), rng.uniform(-0.4, 0.4), cardboard))
    return (hx, hy), parts


def _bin(rng: np.random.Generator) -> tuple:
    r = rng.uniform(0.12, 0.22)
    material = Material(pick_colour(rng, VIVID + NEUTRALS), "plain", noise_seed(rng))
    return (r, r), [Cylinder((0.0, 0.0), r, (0.0, rng.uniform(0.3, 0.6)), material)]


def _plant(rng: np.random.Generator) -> tuple:
    """A pot with a leafy bush above it."""
    r, pot = rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.4)
    bush = r * rng.uniform(1.2, 1.6)
    terracotta, white, black = (0.55, 0.30, 0.20), (0.85, 0.85, 0.82), (0.2, 0.2, 0.22)
    pot_material = Material(pick_colour(rng, (terracotta, white, black)), "plain", noise_seed(rng))
    leaves = Material(pick_colour(rng, ((0.18, 0.38, 0.14), (0.25, 0.45, 0.20)), 0.1), "foliage", noise_seed(rng))
    parts = [
        Cylinder((0.0, 0.0), r, (0.0, pot), pot_material),
        Cylinder((0.0, 0.0), bush, (pot, pot + rng.uniform(0.3, 0.9)), leaves),
    ]
    return (bush, bush), parts


def _floor_lamp(rng: np.random.Generator) -> tuple:
    """A floor lamp: base disc, pole, glowing shade."""
    top, r = rng.uniform(1.4, 1.7), rng.uniform(0.16, 0.24)
    metal = Material(pick_colour(rng, NEUTRALS[1:3]), "plain", noise_seed(rng))
    parts = [
        Cylinder((0.0, 0.0), 0.15, (0.0, 0.03), metal),
        Cylinder((0.0, 0.0), 0.015, (0.03, top - 0.3), metal),
        Cylinder(
            (0.0, 0.0), r, (top - 0.3, top), Material(pick_colour(rng, ((0.98, 0.92, 0.78),), 0.02), emissive=True)
        ),
    ]
    return (r, r), parts


_WALL_PIECES = (_cabinet, _bookcase, _bed, _sofa, _desk, _tv_stand, _table, _wall_shelf, _boxes, _plant)
_WALL_WEIGHTS = (0.2, 0.14, 0.08, 0.1, 0.13, 0.08, 0.08, 0.07, 0.07, 0.05)
_FREE_PIECES = (_dining_set, _table, _chair, _boxes, _bin, _plant, _floor_lamp)
_FREE_WEIGHTS = (0.14, 0.12, 0.24, 0.24, 0.1, 0.1, 0.06)
