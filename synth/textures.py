"""Procedural surface patterns: paint, wallpaper, floors, wall decorations and furniture finishes.

Colours are linear RGB float32 [3, n] in [0, 1]; coordinates and footprints are metres. Every pattern is
filtered by the pixel's footprint (how far the surface point moves across one pixel), so fine detail fades
to its mean in the distance instead of aliasing into moire.

Three tables, looked up by name:
    PATTERNS[name](material, a, b, footprint_a, footprint_b)      room surfaces, at world (x, y) or wall (s, z)
    DECORATIONS[kind](decoration, trim, s, z) -> (colour, glows)  pictures, windows and doors on a wall
    OBJECT_PATTERNS[name](material, local, face, half, footprint)  furniture, in the part's own frame
"""
from __future__ import annotations

import numpy as np

from synth.scene import NEUTRALS, VIVID, Decoration, Material

# ---------------------------------------------------------------------------
# Noise and filtering
# ---------------------------------------------------------------------------

_LATTICE_SIZE = 256
_LATTICE = np.random.default_rng(0).random(_LATTICE_SIZE * _LATTICE_SIZE, dtype=np.float32)


def _cell_random(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    """A fixed random value in [0, 1) for each integer cell (i, j) (arrays of one shape), varied by seed."""
    mask = _LATTICE_SIZE - 1  # a power of two, so & wraps like % but faster
    return _LATTICE[((i + seed) & mask) * _LATTICE_SIZE + ((j * 7 + 3 * seed) & mask)]


def _value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1] over (x, y) in lattice cells: bilinear between cell values with smoothstep weights."""
    i, j = np.floor(x), np.floor(y)
    fx, fy = x - i, y - j
    i, j = i.astype(np.int32), j.astype(np.int32)
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    top = _cell_random(i, j, seed) * (1 - sx) + _cell_random(i + 1, j, seed) * sx
    bottom = _cell_random(i, j + 1, seed) * (1 - sx) + _cell_random(i + 1, j + 1, seed) * sx
    return top * (1 - sy) + bottom * sy


def line_coverage(coord: np.ndarray, period: float, width: float, footprint: np.ndarray) -> np.ndarray:
    """Fraction of a pixel (footprint wide, centred at coord) covered by lines [k period, k period + width].

    The exact box-filtered pulse train, so grout and plank joints stay crisp up close and turn into an
    even tint in the distance instead of moire.
    """
    def covered(x):  # line length within [0, x]
        cycles = np.floor(x / period)
        return cycles * width + np.minimum(x - cycles * period, width)

    f = np.maximum(footprint, 1e-4)
    return (covered(coord + f / 2) - covered(coord - f / 2)) / f


def _detail(period: float, footprint: np.ndarray) -> np.ndarray:
    """Contrast [n] left to a sinusoidal detail of this period once pixels are footprint wide: 1 to 0 as
    the footprint grows from a quarter to half the period."""
    return np.clip(2.0 - 4.0 * footprint / period, 0.0, 1.0)


def rgb(colour) -> np.ndarray:
    """A colour (r, g, b) as a float32 column [3, 1] that broadcasts over [3, n]."""
    return np.asarray(colour, np.float32)[:, None]


# ---------------------------------------------------------------------------
# Room surfaces
# ---------------------------------------------------------------------------

def plain(material: Material, a: np.ndarray, b: np.ndarray, *_) -> np.ndarray:
    """Flat colour with a faint large-scale mottle (real paint and plaster are never perfectly even); two
    sines are enough at +-3 % and cost a tenth of value noise."""
    phase = np.float32(material.seed % 628 / 100)
    mottle = np.sin(a * np.float32(2.3) + phase) * np.sin(b * np.float32(1.9) - phase)
    return rgb(material.colour) * (1.0 + 0.03 * mottle)


def _stripes(material: Material, s, z, fs, fz) -> np.ndarray:
    """Wallpaper: vertical stripes of colour2 every scale_m."""
    cover = line_coverage(s, material.scale_m, material.scale_m / 2, fs)
    return plain(material, s, z) * (1 - cover) + rgb(material.colour2) * cover


def _wainscot(material: Material, s, z, fs, fz) -> np.ndarray:
    """Paint above a panelled lower wall of colour2 (height scale_m) capped by a rail."""
    below = z < material.scale_m
    colour = plain(material, s, z)
    panel = rgb(material.colour2) * (1.0 - 0.25 * line_coverage(s, 0.45, 0.01, fs))
    colour = np.where(below, panel, colour)
    rail = line_coverage(z - material.scale_m, 1e3, 0.03, fz)
    return colour * (1 - 0.3 * rail)


def _planks(material: Material, x, y, fx, fy) -> np.ndarray:
    """Wooden planks scale_m wide running along world y (x if seed is odd), staggered ends, grain, dark joints."""
    along, across, f_along, f_across = (y, x, fy, fx) if material.seed % 2 == 0 else (x, y, fx, fy)
    width, length = material.scale_m, 6.0 * material.scale_m
    row = np.floor(across / width).astype(np.int32)
    shifted = along + _cell_random(row, np.zeros_like(row), material.seed) * length  # stagger each row's joints
    column = np.floor(shifted / length).astype(np.int32)
    tone = 0.78 + 0.44 * _cell_random(row, column, material.seed + 1)
    grain_period = 0.012
    grain = np.sin((across / grain_period + 3.0 * _value_noise(along / 0.4, across / 0.05, material.seed)) * 2 * np.pi)
    shade = tone * (1 + 0.07 * grain * _detail(grain_period, f_across))
    side_gaps = line_coverage(across, width, 0.004, f_across)
    end_gaps = line_coverage(shifted, length, 0.004, f_along)
    joints = 1 - (1 - side_gaps) * (1 - end_gaps)
    return rgb(material.colour) * shade * (1 - 0.6 * joints)


def _tiles(material: Material, x, y, fx, fy) -> np.ndarray:
    """Square tiles scale_m across, alternating colour and colour2, with grout lines."""
    size = material.scale_m
    i, j = np.floor(x / size).astype(np.int32), np.floor(y / size).astype(np.int32)
    checker = ((i + j) % 2 == 1)
    base = np.where(checker, rgb(material.colour2), rgb(material.colour))
    base = base * (0.94 + 0.12 * _cell_random(i, j, material.seed))
    grout = 1 - (1 - line_coverage(x, size, 0.006, fx)) * (1 - line_coverage(y, size, 0.006, fy))
    return base * (1 - grout) + rgb((0.35, 0.34, 0.32)) * grout


def _carpet(material: Material, x, y, fx, fy) -> np.ndarray:
    """Carpet: fine fibre noise that fades with distance over a broad blotchy tone."""
    fine = _value_noise(x / 0.02, y / 0.02, material.seed) - 0.5
    broad = _value_noise(x / 0.5, y / 0.5, material.seed + 1)
    return rgb(material.colour) * (0.9 + 0.15 * broad + 0.25 * fine * _detail(0.04, np.maximum(fx, fy)))


PATTERNS = {
    "plain": plain, "stripes": _stripes, "wainscot": _wainscot, "planks": _planks, "tiles": _tiles, "carpet": _carpet,
}


# ---------------------------------------------------------------------------
# Wall decorations
# ---------------------------------------------------------------------------

def _frame_border(s, z, deco: Decoration, width: float) -> np.ndarray:
    """Whether points (s, z) lie within `width` of the decoration's outline."""
    (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
    return (s - s0 < width) | (s1 - s < width) | (z - z0 < width) | (z1 - z < width)


def _picture(deco: Decoration, trim: Material, s, z):
    """A framed picture: a vertical gradient between two colours with a blob of a third, dark frame."""
    (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
    top, bottom, blob, frame = (rgb(c) for c in deco.colours)
    height = (z - z0) / (z1 - z0)
    colour = bottom * (1 - height) + top * height
    centre_s, centre_z = s0 + 0.6 * (s1 - s0), z0 + 0.45 * (z1 - z0)
    in_blob = ((s - centre_s) / (0.25 * (s1 - s0))) ** 2 + ((z - centre_z) / (0.25 * (z1 - z0))) ** 2 < 1
    colour = np.where(in_blob, blob, colour)
    colour = np.where(_frame_border(s, z, deco, 0.04), frame, colour)
    return colour, np.zeros(s.shape, bool)


def _window_glass(deco: Decoration, s, z) -> np.ndarray:
    """Whether points (s, z) on a wall are a window's glass, not its frame, its mullions or outside it."""
    (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
    inside = (s > s0) & (s < s1) & (z > z0) & (z < z1)
    mullion = (np.abs(s - (s0 + s1) / 2) < 0.025) | (np.abs(z - (z0 + z1) / 2) < 0.025)
    return inside & ~_frame_border(s, z, deco, 0.06) & ~mullion


def _window(deco: Decoration, trim: Material, s, z):
    """A window: bright sky (lighter towards the top) behind a trim-coloured frame and cross; the glass glows."""
    z0, z1 = deco.z_range_m
    glass = _window_glass(deco, s, z)
    height = (z - z0) / (z1 - z0)
    sky = rgb(deco.colours[0]) * (0.85 + 0.15 * height)
    return np.where(glass, sky, rgb(trim.colour)), glass


def _door(deco: Decoration, trim: Material, s, z):
    """A door: a slab of colours[0] with two recessed panels and a dark handle, inside a trim-coloured casing."""
    (s0, s1), z1 = deco.s_range_m, deco.z_range_m[1]  # a door stands on the floor
    colour = np.broadcast_to(rgb(deco.colours[0]), (3, s.size)).copy()
    inset_s = (s > s0 + 0.15) & (s < s1 - 0.15)
    upper = inset_s & (z > 1.15) & (z < z1 - 0.2)
    lower = inset_s & (z > 0.2) & (z < 0.95)
    colour[:, upper | lower] *= 0.85
    handle = (np.abs(s - (s1 - 0.12)) < 0.05) & (np.abs(z - 1.0) < 0.02)
    colour[:, handle] = 0.12
    casing = (s - s0 < 0.06) | (s1 - s < 0.06) | (z1 - z < 0.06)
    colour[:, casing] = rgb(trim.colour)
    return colour, np.zeros(s.shape, bool)


DECORATIONS = {"picture": _picture, "window": _window, "door": _door}


# ---------------------------------------------------------------------------
# Furniture: local = (x, y, height) [3, n] in the part's frame; face 0-5 = -x, +x, -y (front), +y, bottom, top
# ---------------------------------------------------------------------------

def _object_plain(material: Material, local, face, half, footprint) -> np.ndarray:
    return plain(material, local[0] + local[1], local[2])


def _object_wood(material: Material, local, face, half, footprint) -> np.ndarray:
    """Wood grain along the part's local x."""
    across = np.where(face >= 4, local[1], local[2])  # across the grain: y on top and bottom, height on the sides
    period = 0.01
    warp = 2.5 * _value_noise(local[0] / 0.3, across / 0.04, material.seed)
    grain = np.sin((across / period + warp) * 2 * np.pi) * _detail(period, footprint)
    return plain(material, local[0], across) * (1 + 0.08 * grain)


def _object_panels(material: Material, local, face, half, footprint) -> np.ndarray:
    """A cabinet: plain sides; its front split into doors (tall) or drawers (low), with seams and handles."""
    colour = plain(material, local[0] + local[1], local[2])
    front = face == 2
    hx, _, hz = half
    x, z = local[0] + hx, local[2]
    if 2 * hz > 1.0:  # doors: vertical seams every ~0.5 m
        doors = max(int(round(2 * hx / 0.5)), 1)
        door_w = 2 * hx / doors
        seams = line_coverage(x, door_w, 0.006, footprint)
        # handles sit by the seams nearest the middle; a single door opens from its right edge
        handle_at = np.where((x < hx) | (doors == 1), door_w - 0.05, 0.05)
        handle = (np.abs(x % door_w - handle_at) < 0.015) & (np.abs(z - min(1.0, hz)) < 0.08)
    else:  # drawers: horizontal seams
        drawers = max(int(round(2 * hz / 0.25)), 1)
        seams = line_coverage(z, 2 * hz / drawers, 0.006, footprint)
        handle = (np.abs(x - hx) < 0.08) & (np.abs((z % (2 * hz / drawers)) - hz / drawers) < 0.012)
    colour = np.where(front, colour * (1 - 0.7 * seams), colour)
    return np.where(front & handle, rgb((0.15, 0.15, 0.15)), colour)


def _object_books(material: Material, local, face, half, footprint) -> np.ndarray:
    """A bookcase: wooden carcass; on its front, shelves every ~0.35 m holding books of varied colour and height."""
    wood = plain(material, local[0], local[2])
    hx, _, hz = half
    x, z = local[0] + hx, local[2]
    shelf_gap = 2 * hz / max(int(round(2 * hz / 0.35)), 1)
    shelf = np.floor(z / shelf_gap).astype(np.int32)
    above_board = z - shelf * shelf_gap - 0.02
    book = np.floor(x / 0.035).astype(np.int32)
    pick = _cell_random(book, shelf, material.seed)
    height = shelf_gap * (0.5 + 0.4 * _cell_random(book, shelf, material.seed + 1))
    palette = np.asarray(VIVID + NEUTRALS, np.float32).T
    book_colour = palette[:, (pick * palette.shape[1]).astype(np.int32) % palette.shape[1]]
    gaps = line_coverage(x, 0.035, 0.004, footprint)
    book_colour = book_colour * (1 - 0.5 * gaps)
    interior = wood * 0.25
    inside = (x > 0.02) & (x < 2 * hx - 0.02) & (above_board > 0)
    shelved = inside & (above_board < height) & (pick > 0.12)
    colour = np.where(inside, interior, wood)
    colour = np.where(shelved, book_colour, colour)
    return np.where(face == 2, colour, wood)


def _object_fabric(material: Material, local, face, half, footprint) -> np.ndarray:
    """Upholstery: soft blotches plus a fine weave that fades with distance."""
    weave = _value_noise((local[0] + local[1]) / 0.01, local[2] / 0.01, material.seed) - 0.5
    blotch = _value_noise((local[0] + local[1]) / 0.25, local[2] / 0.25, material.seed + 1)
    return rgb(material.colour) * (0.9 + 0.15 * blotch + 0.2 * weave * _detail(0.02, footprint))


def _object_bedding(material: Material, local, face, half, footprint) -> np.ndarray:
    """A mattress: a blanket of colour, with a folded-back white sheet at the head (local +y)."""
    blanket = _object_fabric(material, local, face, half, footprint)
    sheet = (face == 5) & (local[1] > half[1] - 0.45)
    fold = (face == 5) & (np.abs(local[1] - (half[1] - 0.45)) < 0.03)
    colour = np.where(sheet, rgb(material.colour2), blanket)
    return np.where(fold, colour * 0.7, colour)


def _object_cardboard(material: Material, local, face, half, footprint) -> np.ndarray:
    """A cardboard box with a strip of tape across its top."""
    colour = plain(material, local[0] + local[1], local[2])
    tape = (face == 5) & (np.abs(local[0]) < 0.03)
    return np.where(tape, colour * 1.25, colour)


def _object_screen(material: Material, local, face, half, footprint) -> np.ndarray:
    """A TV or monitor: a dark glossy front with a faint diagonal reflection, black casing elsewhere."""
    gloss = 0.05 + 0.06 * np.clip(1 - np.abs(local[0] / half[0] - local[2] / half[2] + 0.3), 0, 1)
    front = (face == 2) & (np.abs(local[0]) < half[0] - 0.02) & (local[2] > 0.02) & (local[2] < 2 * half[2] - 0.02)
    return np.where(front, gloss, rgb(material.colour))


def _object_foliage(material: Material, local, face, half, footprint) -> np.ndarray:
    """Leaves: green with strong light/dark blotches at two sizes."""
    u, v = local[0], local[1] + local[2]  # across and up a bush's side, or across its top
    big = _value_noise(u / 0.07, v / 0.07, material.seed)
    small = _value_noise(u / 0.025, v / 0.025, material.seed + 1) * _detail(0.05, footprint)
    return rgb(material.colour) * (0.4 + 0.8 * big + 0.5 * (small - 0.5))


OBJECT_PATTERNS = {
    "plain": _object_plain,
    "wood": _object_wood,
    "panels": _object_panels,
    "books": _object_books,
    "fabric": _object_fabric,
    "bedding": _object_bedding,
    "cardboard": _object_cardboard,
    "screen": _object_screen,
    "foliage": _object_foliage,
}
