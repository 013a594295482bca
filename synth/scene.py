"""What a synthetic frame shows: the room, its furniture, their materials, the lights and the camera.

World frame: metres, x across the room's width, y along its length, z up; the room is [0, W] x [0, L] x [0, H].
Camera frame (OpenCV): x right, y down, z along the optical axis.

The dataclasses here are frozen descriptions: rooms.py and furniture.py draw one at random (from the colour
palettes at the end, through pick_colour), and raycast.py, shading.py and kinect.py turn it into pixels.
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Surface ids in raycast.Hits.surface: the room's six faces, then 6 + i for primitive i.
WALL_X0, WALL_X1, WALL_Y0, WALL_Y1, FLOOR, CEILING = range(6)
FIRST_PRIMITIVE = 6


# ---------------------------------------------------------------------------
# Scene description
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Material:
    """How a surface looks: albedo `colour`, a `pattern` name from textures.PATTERNS or textures.OBJECT_PATTERNS,
    a second colour and a length scale some patterns use (grout, stripes, plank width), a `seed` that shifts its
    noise, whether it glows (lamps) instead of being lit, and whether the Kinect gets no depth from it (glossy
    black)."""

    colour: tuple
    pattern: str = "plain"
    seed: int = 0
    colour2: tuple = (0.0, 0.0, 0.0)
    scale_m: float = 0.0
    emissive: bool = False
    drops_depth: bool = False


@dataclasses.dataclass(frozen=True)
class Box:
    """A box standing upright: footprint centre (x, y) and half sizes along its own x and y, turned by
    `yaw_rad` about the vertical; it spans heights z_range_m = (bottom, top). Its front is its local -y."""

    centre_xy_m: tuple
    half_xy_m: tuple
    z_range_m: tuple
    yaw_rad: float
    material: Material


@dataclasses.dataclass(frozen=True)
class Cylinder:
    """An upright cylinder: axis at (x, y), radius, spanning heights z_range_m = (bottom, top)."""

    centre_xy_m: tuple
    radius_m: float
    z_range_m: tuple
    material: Material


@dataclasses.dataclass(frozen=True)
class Decoration:
    """A flat picture, window or door painted on wall `wall` (WALL_X0..WALL_Y1), over along-wall
    coordinates s_range_m (y on the x walls, x on the y walls) and heights z_range_m."""

    wall: int
    kind: str
    s_range_m: tuple
    z_range_m: tuple
    colours: tuple
    drops_depth: bool = False  # glass the Kinect's IR passes through


@dataclasses.dataclass(frozen=True)
class Room:
    size_m: tuple  # (W, L, H)
    floor: Material
    walls: tuple  # one Material per wall, WALL_X0..WALL_Y1
    ceiling: Material
    trim: Material  # baseboards, door and window frames
    baseboard_m: float
    decorations: tuple


@dataclasses.dataclass(frozen=True)
class Lighting:
    """Ambient + a directional fill (unit vector towards it) + a point lamp whose light halves at lamp_reach_m."""

    ambient: float
    fill_direction: tuple
    fill: float
    lamp_position_m: tuple
    lamp: float
    lamp_reach_m: float
    tint: tuple  # RGB gain of the light's colour
    exposure: float


@dataclasses.dataclass(frozen=True)
class Camera:
    position_m: np.ndarray  # (3,) world
    rotation: np.ndarray  # (3, 3) camera-to-world


@dataclasses.dataclass(frozen=True)
class Scene:
    camera: Camera
    room: Room
    primitives: tuple  # Box | Cylinder
    lighting: Lighting


def camera_rotation(yaw_rad: float, pitch_rad: float, roll_rad: float) -> np.ndarray:
    """Camera-to-world rotation [3, 3]. At zero angles the camera looks along world +y with image-down = world -z;
    yaw turns it about world z (towards -x for yaw > 0), pitch > 0 tilts it down, roll turns it about its axis."""
    level = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    cy, sy = np.cos(yaw_rad), np.sin(yaw_rad)
    cp, sp = np.cos(pitch_rad), np.sin(pitch_rad)
    cr, sr = np.cos(roll_rad), np.sin(roll_rad)
    yaw = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])  # forward gains a +y (down) component
    roll = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
    return yaw @ level @ pitch @ roll


# ---------------------------------------------------------------------------
# Drawing materials
# ---------------------------------------------------------------------------

# Linear RGB albedos in [0, 1] that rooms.py and furniture.py draw from (through pick_colour).
WOODS = ((0.55, 0.38, 0.22), (0.70, 0.53, 0.33), (0.38, 0.24, 0.14), (0.80, 0.66, 0.46), (0.26, 0.17, 0.11))
PAINTS = (
    (0.86, 0.84, 0.78), (0.82, 0.77, 0.66), (0.74, 0.77, 0.80), (0.70, 0.78, 0.70),
    (0.88, 0.81, 0.60), (0.80, 0.70, 0.68), (0.90, 0.90, 0.88), (0.60, 0.64, 0.72),
)
FABRICS = (
    (0.55, 0.12, 0.18), (0.20, 0.28, 0.45), (0.35, 0.35, 0.38), (0.58, 0.50, 0.40),
    (0.25, 0.40, 0.30), (0.75, 0.70, 0.62), (0.15, 0.15, 0.17), (0.62, 0.38, 0.20),
)
NEUTRALS = ((0.88, 0.88, 0.86), (0.14, 0.14, 0.15), (0.50, 0.50, 0.52), (0.68, 0.66, 0.62))
VIVID = (
    (0.75, 0.15, 0.12), (0.15, 0.35, 0.70), (0.85, 0.65, 0.10), (0.20, 0.55, 0.25),
    (0.55, 0.20, 0.55), (0.90, 0.45, 0.15), (0.10, 0.50, 0.55), (0.85, 0.85, 0.80),
)


def pick_colour(rng: np.random.Generator, options, jitter: float = 0.06) -> tuple:
    """One colour from options, each channel scaled by up to +-jitter so no two rooms match exactly."""
    colour = np.asarray(options[rng.integers(len(options))]) * rng.uniform(1 - jitter, 1 + jitter, 3)
    return tuple(np.clip(colour, 0.0, 1.0))


def noise_seed(rng: np.random.Generator) -> int:
    """A Material.seed: shifts a pattern's noise so two surfaces of one material never repeat each other."""
    return int(rng.integers(1 << 16))
