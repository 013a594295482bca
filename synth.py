"""Procedural indoor scenes with exact metric depth, as NYU Depth V2's Kinect would see them.

A frame is a box-shaped room (floor, four walls, ceiling) holding box and cylinder furniture, ray-cast at
640x480 through NYU's colour-camera intrinsics, textured in world coordinates, shaded, and paired with the
z-depth a Kinect would return, holes included.

World frame: metres, x across the room's width, y along its length, z up; the room is [0, W] x [0, L] x [0, H].
Camera frame (OpenCV): x right, y down, z along the optical axis. Every pixel's ray is scaled so its
camera-frame z is 1, so the ray parameter at a hit *is* the z-depth a Kinect reports (not the ray length).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from camera import NYU_FRAME_HW, NYU_INTRINSICS

KINECT_RANGE_M = (0.5, 10.0)  # nearer or farther than this the Kinect returns no depth
KINECT_BASELINE_M = 0.075  # IR projector to IR camera: sets how wide the shadow beside each near edge is

# Surface ids in Hits.surface: the room's six faces, then 6 + i for primitive i.
WALL_X0, WALL_X1, WALL_Y0, WALL_Y1, FLOOR, CEILING = range(6)
FIRST_PRIMITIVE = 6

# Linear RGB albedos in [0, 1] that the scene sampler draws from.
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


# ---------------------------------------------------------------------------
# Scene description
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Material:
    """How a surface looks: albedo `colour`, a `pattern` name from _PATTERNS or _OBJECT_PATTERNS, a second
    colour and a length scale some patterns use (grout, stripes, plank width), a `seed` that shifts its noise,
    whether it glows (lamps) instead of being lit, and whether the Kinect gets no depth from it (glossy black)."""

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


@dataclasses.dataclass(frozen=True)
class Hits:
    """What each pixel's ray hits first."""

    depth_m: np.ndarray  # float32 [h, w] z-depth in metres
    surface: np.ndarray  # int16 [h, w]: a room face id, or FIRST_PRIMITIVE + primitive index
    rays: np.ndarray  # float32 [3, h, w] world-frame rays, camera-frame z = 1


@dataclasses.dataclass(frozen=True)
class Surfaces:
    """Every pixel's hit, regrouped so each surface's pixels form one run: surface i owns [starts[i], starts[i + 1])."""

    order: np.ndarray  # int [n] flat pixel index of each sample
    sample_of_pixel: np.ndarray  # int [n] the inverse: sample index of each flat pixel
    starts: np.ndarray  # int [surfaces + 1]
    points: np.ndarray  # float32 [3, n] world hit points, metres
    rays: np.ndarray  # float32 [3, n] world rays, camera-frame z = 1
    depth_m: np.ndarray  # float32 [n]

    def run(self, surface: int) -> slice:
        return slice(int(self.starts[surface]), int(self.starts[surface + 1]))

    def to_image(self, values: np.ndarray, frame_hw: tuple) -> np.ndarray:
        """Per-sample values [..., n] -> image [..., h, w]."""
        return np.take(values, self.sample_of_pixel, axis=-1).reshape(*values.shape[:-1], *frame_hw)


@dataclasses.dataclass(frozen=True)
class Appearance:
    """What the shading needs per sample (in Surfaces order)."""

    albedo: np.ndarray  # float32 [3, n] linear RGB in [0, 1]
    normals: np.ndarray  # float32 [3, n] unit, world frame
    emissive: np.ndarray  # bool [n]: lamp shades and window glass shine with their albedo, unlit
    no_return: np.ndarray  # bool [n]: window glass and glossy screens, where the Kinect measures no depth


@dataclasses.dataclass(frozen=True)
class PixelGrid:
    intrinsics: dict  # fx, fy, cx, cy in pixels
    rays: np.ndarray  # float32 [3, h, w] camera-frame ray through each pixel centre, z component 1
    ray_length: np.ndarray  # float32 [h, w] |ray|, metres of travel per metre of depth

    @property
    def frame_hw(self) -> tuple:
        return self.ray_length.shape


# ---------------------------------------------------------------------------
# The frame
# ---------------------------------------------------------------------------

def render_frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic indoor frame. Returns (rgb uint8 [480, 640, 3], depth float32 [480, 640] in metres, 0.0 = invalid)."""
    rng = np.random.default_rng(seed)
    grid = nyu_pixel_grid()
    scene = sample_scene(rng)
    hits = trace(scene.camera, scene.room.size_m, scene.primitives, grid)
    surfaces = group_by_surface(hits, scene.camera, len(scene.primitives))
    looks = appearance(scene, surfaces, grid)
    rgb = shade(scene, hits, surfaces, looks, grid, rng)
    depth = kinect_depth(hits.depth_m, surfaces.to_image(looks.no_return, grid.frame_hw), grid, rng)
    return rgb, depth


@functools.cache
def nyu_pixel_grid() -> PixelGrid:
    """NYU's 640x480 colour camera as a grid of rays, built once per process."""
    return pixel_grid(NYU_INTRINSICS, NYU_FRAME_HW)


def pixel_grid(intrinsics: dict, frame_hw: tuple) -> PixelGrid:
    """Rays through the centres of a (h, w) pixel grid (pixel (u, v) centred at integer u, v)."""
    h, w = frame_hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (u - intrinsics["cx"]) / intrinsics["fx"]
    y = (v - intrinsics["cy"]) / intrinsics["fy"]
    rays = np.stack([x, y, np.ones_like(x)]).astype(np.float32)
    return PixelGrid(dict(intrinsics), rays, np.sqrt(x * x + y * y + 1.0).astype(np.float32))


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
# Ray casting
# ---------------------------------------------------------------------------

def trace(camera: Camera, room_size_m: tuple, primitives, grid: PixelGrid) -> Hits:
    """The nearest surface along every pixel's ray: the room's inside, then each primitive within its image box."""
    # written out rather than a matmul: BLAS would spin up threads that fight data.py's worker processes
    x, y = grid.rays[0], grid.rays[1]
    rays = np.stack([np.float32(r[0]) * x + np.float32(r[1]) * y + np.float32(r[2]) for r in camera.rotation])
    origin = np.asarray(camera.position_m, np.float64)
    depth, surface = trace_room(origin, rays, room_size_m)
    for index, primitive in enumerate(primitives):
        window = image_window(corners(primitive), camera, grid)
        if window is None:
            continue
        intersect = intersect_box if isinstance(primitive, Box) else intersect_cylinder
        t = intersect(primitive, origin, rays[(slice(None), *window)])
        nearer = t < depth[window]
        np.copyto(depth[window], t, where=nearer)
        np.copyto(surface[window], FIRST_PRIMITIVE + index, where=nearer)
    return Hits(depth, surface, rays)


def trace_room(origin: np.ndarray, rays: np.ndarray, room_size_m: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Where rays [3, h, w] from `origin` inside the room leave it: (z-depth float32 [h, w], room face int16 [h, w])."""
    depth = surface = None
    for axis in range(3):
        d = rays[axis]
        outward = d >= 0
        gap = np.where(outward, np.float32(room_size_m[axis] - origin[axis]), np.float32(origin[axis]))
        with np.errstate(divide="ignore"):
            t = gap / np.abs(d)  # a ray parallel to both planes gets inf and never wins
        face = (2 * axis + outward).astype(np.int16)
        if depth is None:
            depth, surface = t, face
        else:
            nearer = t < depth
            depth, surface = np.where(nearer, t, depth), np.where(nearer, face, surface)
    return depth, surface


def intersect_box(box: Box, origin: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Slab test of rays [3, h, w] from `origin` against a box: entry z-depth [h, w], inf on a miss."""
    c, s = float(np.cos(box.yaw_rad)), float(np.sin(box.yaw_rad))  # Python floats keep the arrays float32
    ox, oy = origin[0] - box.centre_xy_m[0], origin[1] - box.centre_xy_m[1]
    (hx, hy), (z0, z1) = box.half_xy_m, box.z_range_m
    # rotated by -yaw into the box's frame, where it is the axis-aligned [-hx, hx] x [-hy, hy] x [z0, z1]
    slabs = (
        (c * ox + s * oy, c * rays[0] + s * rays[1], -hx, hx),
        (c * oy - s * ox, c * rays[1] - s * rays[0], -hy, hy),
        (origin[2], rays[2], z0, z1),
    )
    near = far = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for o, d, lo, hi in slabs:
            inverse = 1.0 / d
            t_lo, t_hi = np.float32(lo - o) * inverse, np.float32(hi - o) * inverse
            enter, leave = np.minimum(t_lo, t_hi), np.maximum(t_lo, t_hi)
            near = enter if near is None else np.maximum(near, enter)
            far = leave if far is None else np.minimum(far, leave)
    return np.where((near <= far) & (near > 0), near, np.float32(np.inf))


def intersect_cylinder(cylinder: Cylinder, origin: np.ndarray, rays: np.ndarray) -> np.ndarray:
    """Rays [3, h, w] from `origin` against an upright cylinder: entry z-depth [h, w], inf on a miss."""
    ox, oy = np.float32(origin[0] - cylinder.centre_xy_m[0]), np.float32(origin[1] - cylinder.centre_xy_m[1])
    oz, r = origin[2], cylinder.radius_m
    z0, z1 = cylinder.z_range_m
    dx, dy, dz = rays
    a = dx * dx + dy * dy
    half_b = ox * dx + oy * dy
    disc = half_b * half_b - a * np.float32(ox * ox + oy * oy - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-half_b - np.sqrt(disc)) / a  # the nearer root; from inside the tube it is negative
        z_side = np.float32(oz) + t_side * dz
        t = np.where((disc >= 0) & (t_side > 0) & (z_side >= z0) & (z_side <= z1), t_side, np.float32(np.inf))
        if oz > z1 or oz < z0:  # only the cap facing the camera can be seen
            t_cap = np.float32((z1 if oz > z1 else z0) - oz) / dz
            on_cap = (t_cap > 0) & ((ox + t_cap * dx) ** 2 + (oy + t_cap * dy) ** 2 <= r * r)
            t = np.where(on_cap, np.minimum(t, t_cap), t)
    return t


def corners(primitive) -> np.ndarray:
    """The 8 corners [8, 3] of a primitive's bounding box in world coordinates (corner i: bit 0 x, bit 1 y, bit 2 z)."""
    if isinstance(primitive, Box):
        (hx, hy), yaw = primitive.half_xy_m, primitive.yaw_rad
    else:
        hx = hy = primitive.radius_m
        yaw = 0.0
    bits = np.array([[(i >> k) & 1 for k in range(3)] for i in range(8)])
    lx, ly = np.where(bits[:, 0], hx, -hx), np.where(bits[:, 1], hy, -hy)
    c, s = np.cos(yaw), np.sin(yaw)
    x = primitive.centre_xy_m[0] + c * lx - s * ly
    y = primitive.centre_xy_m[1] + s * lx + c * ly
    z = np.asarray(primitive.z_range_m)[bits[:, 2]]
    return np.stack([x, y, z], axis=1)


_BOX_EDGES = np.array([(a, a | bit) for bit in (1, 2, 4) for a in range(8) if not a & bit])


def image_window(corners_world: np.ndarray, camera: Camera, grid: PixelGrid, near_m: float = 0.01):
    """The (rows, cols) slices of the pixels whose rays can reach a convex body with these corners, or None.

    Edges that cross the camera plane are clipped at near_m first, so bodies beside the camera keep a tight box.
    """
    points = (corners_world - camera.position_m) @ camera.rotation  # world -> camera frame
    za, zb = points[_BOX_EDGES[:, 0], 2], points[_BOX_EDGES[:, 1], 2]
    crossing = (za - near_m) * (zb - near_m) < 0
    s = (near_m - za[crossing]) / (zb[crossing] - za[crossing])
    a, b = points[_BOX_EDGES[crossing, 0]], points[_BOX_EDGES[crossing, 1]]
    visible = np.concatenate([points[points[:, 2] >= near_m], a + s[:, None] * (b - a)])
    if not len(visible):
        return None
    k = grid.intrinsics
    u = k["fx"] * visible[:, 0] / visible[:, 2] + k["cx"]
    v = k["fy"] * visible[:, 1] / visible[:, 2] + k["cy"]
    h, w = grid.frame_hw
    u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, w)
    v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, h)
    if u0 >= u1 or v0 >= v1:
        return None
    return slice(v0, v1), slice(u0, u1)


# ---------------------------------------------------------------------------
# Kinect depth
# ---------------------------------------------------------------------------

def kinect_depth(depth_m: np.ndarray, no_return: np.ndarray, grid: PixelGrid, rng: np.random.Generator) -> np.ndarray:
    """Exact z-depth [h, w] -> what a Kinect returns, float32 metres with 0.0 where it returns nothing: out of
    range, on no-return surfaces (bool [h, w]), in the projector's shadow, along depth edges, or in a few blobs."""
    near, far = KINECT_RANGE_M
    valid = (depth_m >= near) & (depth_m <= far) & ~no_return
    valid &= ~projector_shadow(depth_m, grid.intrinsics["fx"], KINECT_BASELINE_M)
    valid &= ~edge_dropouts(depth_m, rng)
    valid &= ~dropouts(depth_m.shape, rng)
    return np.where(valid, depth_m, np.float32(0.0))


def projector_shadow(depth_m: np.ndarray, fx: float, baseline_m: float) -> np.ndarray:
    """Pixels [h, w] the Kinect's IR projector cannot light, bool.

    The projector sits baseline_m to the camera's right, so a point at column u and depth z lies on projector
    column u - fx * baseline / z. A pixel is in shadow when some pixel to its right in the row (necessarily a
    nearer one) reaches the same or a smaller projector column: that is the band left of every near edge.
    """
    h, w = depth_m.shape
    projector_u = np.arange(w, dtype=np.float32) - np.float32(fx * baseline_m) / depth_m
    right_min = np.minimum.accumulate(projector_u[:, ::-1], axis=1)[:, ::-1]
    # the smallest projector column strictly to the right; 0.5 px of slack keeps sloping surfaces lit
    beyond = np.concatenate([right_min[:, 1:], np.full((h, 1), np.inf, np.float32)], axis=1)
    return projector_u > beyond + 0.5


def edge_dropouts(depth_m: np.ndarray, rng: np.random.Generator, jump: float = 0.05) -> np.ndarray:
    """A ragged band [h, w] (bool) on both sides of every depth jump above `jump` (relative): the Kinect's
    block matching straddles the edge there and often gives up. Each edge pixel is lost with probability 1/2."""
    edge = np.zeros(depth_m.shape, bool)
    for axis in (0, 1):
        a, b = np.swapaxes(depth_m, 0, axis)[:-1], np.swapaxes(depth_m, 0, axis)[1:]
        jumps = np.abs(a - b) > jump * np.minimum(a, b)
        np.swapaxes(edge, 0, axis)[:-1] |= jumps
        np.swapaxes(edge, 0, axis)[1:] |= jumps
    return edge & (rng.random(depth_m.shape, dtype=np.float32) < 0.5)


def dropouts(frame_hw: tuple, rng: np.random.Generator) -> np.ndarray:
    """A few small elliptical holes [h, w] (bool), like those a Kinect leaves on dark or shiny spots."""
    h, w = frame_hw
    holes = np.zeros((h, w), bool)
    for _ in range(rng.integers(3, 13)):
        cv, cu = rng.uniform(0, h), rng.uniform(0, w)
        rv, ru = rng.uniform(2, 14, size=2)
        v0, v1 = max(int(cv - rv), 0), min(int(cv + rv) + 1, h)
        u0, u1 = max(int(cu - ru), 0), min(int(cu + ru) + 1, w)
        v, u = np.mgrid[v0:v1, u0:u1]
        holes[v0:v1, u0:u1] |= ((v - cv) / rv) ** 2 + ((u - cu) / ru) ** 2 <= 1.0
    return holes


# ---------------------------------------------------------------------------
# Shading
# ---------------------------------------------------------------------------

def group_by_surface(hits: Hits, camera: Camera, primitive_count: int) -> Surfaces:
    """Regroup the pixels by the surface they see, so each surface is shaded on one contiguous run."""
    surface = hits.surface.ravel()
    order = np.argsort(surface, kind="stable")
    sample_of_pixel = np.empty_like(order)
    sample_of_pixel[order] = np.arange(order.size)
    counts = np.bincount(surface, minlength=FIRST_PRIMITIVE + primitive_count)
    starts = np.concatenate([[0], np.cumsum(counts)])
    rays = np.take(hits.rays.reshape(3, -1), order, axis=1)
    depth = np.take(hits.depth_m.ravel(), order)
    points = np.asarray(camera.position_m, np.float32)[:, None] + rays * depth
    return Surfaces(order, sample_of_pixel, starts, points, rays, depth)


def appearance(scene: Scene, surfaces: Surfaces, grid: PixelGrid) -> Appearance:
    """Albedo, normal, glow and depth dropout for every sample: textures in world or object coordinates."""
    n = surfaces.depth_m.size
    albedo = np.zeros((3, n), np.float32)
    normals = np.zeros((3, n), np.float32)
    emissive = np.zeros(n, bool)
    no_return = np.zeros(n, bool)
    room = scene.room
    for face in range(FIRST_PRIMITIVE):
        run = surfaces.run(face)
        if run.start == run.stop:
            continue
        axis = face // 2
        normals[axis, run] = -1.0 if face % 2 else 1.0  # each face's normal points into the room
        p = surfaces.points[:, run]
        footprint = plane_footprint(surfaces.depth_m[run], surfaces.rays[:, run], axis, scene.camera.rotation, grid)
        if face == FLOOR:
            albedo[:, run] = _PATTERNS[room.floor.pattern](room.floor, p[0], p[1], footprint[0], footprint[1])
        elif face == CEILING:
            albedo[:, run] = _plain(room.ceiling, p[0], p[1])
        else:
            albedo[:, run], emissive[run], no_return[run] = wall_albedo(room, face, p, footprint)
    for index, primitive in enumerate(scene.primitives):
        run = surfaces.run(FIRST_PRIMITIVE + index)
        if run.start == run.stop:
            continue
        rays = surfaces.rays[:, run]
        ray_length = np.sqrt(np.sum(rays * rays, axis=0))
        facing_width = surfaces.depth_m[run] * ray_length / np.float32(grid.intrinsics["fx"])
        albedo[:, run], normals[:, run] = primitive_surface(
            primitive, surfaces.points[:, run], rays / ray_length, facing_width
        )
        emissive[run] = primitive.material.emissive
        no_return[run] = primitive.material.drops_depth
    return Appearance(albedo, normals, emissive, no_return)


def plane_footprint(depth: np.ndarray, rays: np.ndarray, axis: int, rotation: np.ndarray, grid: PixelGrid):
    """How far [3, n] (metres, per world axis; 0 along `axis`) the hit point moves across one pixel, on a plane
    normal to world `axis`.

    From p = o + t r with t = (c - o_a) / r_a: dp/du = t (dr/du - r (dr/du)_a / r_a), likewise for v.
    Textures average over this much so distant floor planks fade to their mean instead of aliasing.
    """
    k = grid.intrinsics
    spread = np.zeros_like(rays)
    per_ray = depth / rays[axis]
    for step in (rotation[:, 0] / k["fx"], rotation[:, 1] / k["fy"]):
        for b in range(3):
            if b != axis:
                spread[b] += np.abs(depth * np.float32(step[b]) - rays[b] * per_ray * np.float32(step[axis]))
    return spread


def wall_coordinates(points: np.ndarray, wall: int) -> tuple[np.ndarray, np.ndarray]:
    """World points [3, n] on `wall` -> (along-wall s, height z) in metres."""
    return (points[1] if wall in (WALL_X0, WALL_X1) else points[0]), points[2]


def wall_albedo(room: Room, wall: int, points: np.ndarray, footprint: np.ndarray):
    """(colour [3, n], emissive [n], glass [n]) of wall points [3, n]: paint, baseboard, then pictures,
    windows and doors. `glass` marks the window panes the Kinect gets no depth from."""
    s, z = wall_coordinates(points, wall)
    fs = footprint[1] if wall in (WALL_X0, WALL_X1) else footprint[0]
    fz = footprint[2]
    colour = _PATTERNS[room.walls[wall].pattern](room.walls[wall], s, z, fs, fz)
    colour = np.where(z < room.baseboard_m, _rgb(room.trim.colour), colour)
    # the baseboard's top edge casts a thin dark line, a useful floor-wall cue
    colour *= 1.0 - 0.35 * _line_coverage(z - room.baseboard_m, 1e3, 0.008, fz)
    glows = np.zeros(s.shape, bool)
    glass = np.zeros(s.shape, bool)
    for deco in room.decorations:
        if deco.wall != wall:
            continue
        (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
        inside = (s >= s0) & (s <= s1) & (z >= z0) & (z <= z1)
        if inside.any():
            c, g = _DECORATIONS[deco.kind](deco, room.trim, s[inside], z[inside])
            colour[:, inside] = c
            glows[inside] = g
            glass[inside] = g & deco.drops_depth
    return colour, glows, glass


def primitive_surface(primitive, points: np.ndarray, directions: np.ndarray, facing_width: np.ndarray):
    """(albedo [3, n], unit normal [3, n]) at world points [3, n] on a primitive's surface, seen along unit
    directions [3, n] by pixels facing_width [n] metres wide on a surface square to the ray."""
    cx, cy = primitive.centre_xy_m
    z0, z1 = primitive.z_range_m
    dx, dy, height = points[0] - np.float32(cx), points[1] - np.float32(cy), points[2] - np.float32(z0)
    top_gap, bottom_gap = np.float32(z1 - z0) - height, height
    if isinstance(primitive, Box):
        c, s = float(np.cos(primitive.yaw_rad)), float(np.sin(primitive.yaw_rad))
        lx, ly = c * dx + s * dy, c * dy - s * dx
        hx, hy = primitive.half_xy_m
        # the face a point lies on is the one it is nearest to (it sits on it up to rounding)
        gaps = np.stack([hx - np.abs(lx), hy - np.abs(ly), np.minimum(top_gap, bottom_gap)])
        axis = np.argmin(gaps, axis=0)
        positive = np.choose(axis, [lx > 0, ly > 0, top_gap < bottom_gap])
        face = (2 * axis + positive).astype(np.int8)
        sign = np.where(positive, np.float32(1), np.float32(-1))
        nx, ny = np.where(axis == 0, sign, 0), np.where(axis == 1, sign, 0)
        normal = np.stack([c * nx - s * ny, s * nx + c * ny, np.where(axis == 2, sign, 0)])
        local, half = np.stack([lx, ly, height]), (hx, hy, (z1 - z0) / 2)
    else:
        r = primitive.radius_m
        radial = np.hypot(dx, dy)
        cap_gap = np.minimum(top_gap, bottom_gap)
        on_side = (r - radial) < cap_gap
        # patterns see the side as a box's front (face 2) and the caps as its bottom and top (4, 5)
        face = np.where(on_side, 2, np.where(top_gap < bottom_gap, 5, 4)).astype(np.int8)
        cap_normal = np.where(top_gap < bottom_gap, np.float32(1), np.float32(-1))
        normal = np.stack(
            [np.where(on_side, dx / r, 0), np.where(on_side, dy / r, 0), np.where(on_side, 0, cap_normal)]
        )
        # on the side: (arc length, radius, height); on a cap: (x, y, height) like a box's top
        local = np.stack([np.where(on_side, np.arctan2(dy, dx) * r, dx), np.where(on_side, radial, dy), height])
        half = (np.pi * r, r, (z1 - z0) / 2)
    normal = normal.astype(np.float32)
    # a slanted face stretches each pixel along the slant (capped, or grazing faces would lose all detail)
    slant = np.abs(np.sum(normal * directions, axis=0))
    footprint = facing_width / np.maximum(slant, np.float32(0.15))
    colour = _OBJECT_PATTERNS[primitive.material.pattern](primitive.material, local, face, half, footprint)
    return colour, normal


def shade(scene: Scene, hits: Hits, surfaces: Surfaces, looks: Appearance, grid: PixelGrid, rng: np.random.Generator):
    """The colour image, uint8 [h, w, 3]: albedo x (ambient + fill + lamp) x occlusion, then sensor effects."""
    light = lighting(scene.lighting, surfaces.points, looks.normals)
    light *= room_corner_occlusion(scene.room.size_m, surfaces)
    light *= np.take(contact_shadows(scene, hits, grid).ravel(), surfaces.order)
    gain = np.asarray(scene.lighting.tint, np.float32)[:, None] * np.float32(scene.lighting.exposure)
    radiance = np.where(looks.emissive, looks.albedo, looks.albedo * light * gain)
    return sensor_image(surfaces.to_image(radiance, grid.frame_hw), grid, rng)


def lighting(light: Lighting, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Irradiance [n]: ambient + Lambertian fill + Lambertian lamp falling off with distance."""
    fx, fy, fz = (np.float32(c) for c in light.fill_direction)
    fill = np.maximum(fx * normals[0] + fy * normals[1] + fz * normals[2], 0.0)
    lamp = [np.float32(c) - p for c, p in zip(light.lamp_position_m, points)]
    distance2 = lamp[0] * lamp[0] + lamp[1] * lamp[1] + lamp[2] * lamp[2]
    facing = lamp[0] * normals[0] + lamp[1] * normals[1] + lamp[2] * normals[2]
    cosine = np.maximum(facing, 0.0) / np.sqrt(distance2)
    lamp_term = cosine / (1.0 + distance2 / np.float32(light.lamp_reach_m**2))
    return np.float32(light.ambient) + np.float32(light.fill) * fill + np.float32(light.lamp) * lamp_term


def room_corner_occlusion(room_size_m: tuple, surfaces: Surfaces) -> np.ndarray:
    """Factor [n] in (0, 1]: room faces darken towards the edges where they meet, as less bounced light
    reaches into a corner; 1 on furniture."""
    factor = np.ones(surfaces.depth_m.size, np.float32)
    room = slice(0, int(surfaces.starts[FIRST_PRIMITIVE]))
    gaps = [np.minimum(p, np.float32(size) - p) for p, size in zip(surfaces.points[:, room], room_size_m)]
    # on a room face one gap is ~0 (its own plane); the middle of the three is the distance to the nearest edge
    smallest = np.minimum(np.minimum(gaps[0], gaps[1]), gaps[2])
    largest = np.maximum(np.maximum(gaps[0], gaps[1]), gaps[2])
    middle = gaps[0] + gaps[1] + gaps[2] - smallest - largest
    factor[room] = 1.0 - 0.3 * np.exp(middle / np.float32(-0.3))
    return factor


def contact_shadows(scene: Scene, hits: Hits, grid: PixelGrid) -> np.ndarray:
    """Factor [h, w] in (0, 1]: the floor darkens near what stands on it, and softly under wide raised parts
    (table tops, seats): the cue that says where an object meets the floor."""
    factor = np.ones(grid.frame_hw, np.float32)
    ox, oy = scene.camera.position_m[:2]
    for primitive in scene.primitives:
        bottom = primitive.z_range_m[0]
        if primitive.material.emissive or (bottom > 0.02 and (_footprint_area(primitive) < 0.1 or bottom > 1.0)):
            continue
        reach = 0.08 + 0.3 * bottom  # raised parts cast wider, fainter shadows
        strength = 0.7 * np.exp(-bottom / 0.9)
        window = image_window(_shadow_corners(primitive, 3 * reach), scene.camera, grid)
        if window is None:
            continue
        on_floor = hits.surface[window] == FLOOR
        if not on_floor.any():
            continue
        rays, depth = hits.rays[(slice(None), *window)], hits.depth_m[window]
        distance = _footprint_distance(primitive, np.float32(ox) + rays[0] * depth, np.float32(oy) + rays[1] * depth)
        factor[window] *= np.where(on_floor, 1.0 - np.float32(strength) * np.exp(distance / np.float32(-reach)), 1.0)
    return factor


def _footprint_area(primitive) -> float:
    if isinstance(primitive, Box):
        return 4 * primitive.half_xy_m[0] * primitive.half_xy_m[1]
    return np.pi * primitive.radius_m**2


def _shadow_corners(primitive, margin_m: float) -> np.ndarray:
    """Corners [8, 3] of the floor patch (the footprint grown by margin_m) where a primitive darkens the floor."""
    if isinstance(primitive, Box):
        hx, hy = primitive.half_xy_m
        grown = dataclasses.replace(primitive, half_xy_m=(hx + margin_m, hy + margin_m), z_range_m=(0.0, 0.001))
    else:
        grown = dataclasses.replace(primitive, radius_m=primitive.radius_m + margin_m, z_range_m=(0.0, 0.001))
    return corners(grown)


def _footprint_distance(primitive, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Horizontal distance (metres, shape of x) from world points (x, y) to a primitive's footprint, 0 inside it."""
    dx, dy = x - np.float32(primitive.centre_xy_m[0]), y - np.float32(primitive.centre_xy_m[1])
    if isinstance(primitive, Cylinder):
        return np.maximum(np.hypot(dx, dy) - np.float32(primitive.radius_m), 0.0)
    c, s = float(np.cos(primitive.yaw_rad)), float(np.sin(primitive.yaw_rad))
    hx, hy = primitive.half_xy_m
    out_x = np.maximum(np.abs(c * dx + s * dy) - np.float32(hx), 0.0)
    out_y = np.maximum(np.abs(c * dy - s * dx) - np.float32(hy), 0.0)
    return np.hypot(out_x, out_y)


def sensor_image(radiance: np.ndarray, grid: PixelGrid, rng: np.random.Generator) -> np.ndarray:
    """Linear radiance [3, h, w] -> uint8 [h, w, 3] through mild vignetting, read noise and a display gamma."""
    off_axis = grid.ray_length * grid.ray_length - 1.0  # tan^2 of the angle off the optical axis
    vignette = 1.0 - np.float32(rng.uniform(0.1, 0.3)) * off_axis / off_axis.max()
    # uniform noise of the chosen standard deviation: it looks the same as Gaussian and is 5x cheaper to draw
    sigma = np.float32(rng.uniform(0.004, 0.015))
    display = rng.random(radiance.shape, dtype=np.float32)
    display -= 0.5
    display *= sigma * np.float32(np.sqrt(12.0))
    display += radiance * vignette
    # in place: each fresh full-frame array costs about as much as the arithmetic on it
    np.clip(display, 0.0, 1.0, out=display)
    np.power(display, np.float32(1 / 2.2), out=display)
    display *= 255.0
    display += 0.5
    return np.ascontiguousarray(display.astype(np.uint8).transpose(1, 2, 0))


# ---------------------------------------------------------------------------
# Textures. Colours are [3, n] float32; coordinates and footprints are metres.
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


def _line_coverage(coord: np.ndarray, period: float, width: float, footprint: np.ndarray) -> np.ndarray:
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


def _rgb(colour) -> np.ndarray:
    return np.asarray(colour, np.float32)[:, None]


def _plain(material: Material, a: np.ndarray, b: np.ndarray, *_) -> np.ndarray:
    """Flat colour with a faint large-scale mottle (real paint and plaster are never perfectly even); two
    sines are enough at +-3 % and cost a tenth of value noise."""
    phase = np.float32(material.seed % 628 / 100)
    mottle = np.sin(a * np.float32(2.3) + phase) * np.sin(b * np.float32(1.9) - phase)
    return _rgb(material.colour) * (1.0 + 0.03 * mottle)


def _stripes(material: Material, s, z, fs, fz) -> np.ndarray:
    """Wallpaper: vertical stripes of colour2 every scale_m."""
    cover = _line_coverage(s, material.scale_m, material.scale_m / 2, fs)
    return _plain(material, s, z) * (1 - cover) + _rgb(material.colour2) * cover


def _wainscot(material: Material, s, z, fs, fz) -> np.ndarray:
    """Paint above a panelled lower wall of colour2 (height scale_m) capped by a rail."""
    below = z < material.scale_m
    colour = _plain(material, s, z)
    panel = _rgb(material.colour2) * (1.0 - 0.25 * _line_coverage(s, 0.45, 0.01, fs))
    colour = np.where(below, panel, colour)
    rail = _line_coverage(z - material.scale_m, 1e3, 0.03, fz)
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
    side_gaps = _line_coverage(across, width, 0.004, f_across)
    end_gaps = _line_coverage(shifted, length, 0.004, f_along)
    joints = 1 - (1 - side_gaps) * (1 - end_gaps)
    return _rgb(material.colour) * shade * (1 - 0.6 * joints)


def _tiles(material: Material, x, y, fx, fy) -> np.ndarray:
    """Square tiles scale_m across, alternating colour and colour2, with grout lines."""
    size = material.scale_m
    i, j = np.floor(x / size).astype(np.int32), np.floor(y / size).astype(np.int32)
    checker = ((i + j) % 2 == 1)
    base = np.where(checker, _rgb(material.colour2), _rgb(material.colour))
    base = base * (0.94 + 0.12 * _cell_random(i, j, material.seed))
    grout = 1 - (1 - _line_coverage(x, size, 0.006, fx)) * (1 - _line_coverage(y, size, 0.006, fy))
    return base * (1 - grout) + _rgb((0.35, 0.34, 0.32)) * grout


def _carpet(material: Material, x, y, fx, fy) -> np.ndarray:
    """Carpet: fine fibre noise that fades with distance over a broad blotchy tone."""
    fine = _value_noise(x / 0.02, y / 0.02, material.seed) - 0.5
    broad = _value_noise(x / 0.5, y / 0.5, material.seed + 1)
    return _rgb(material.colour) * (0.9 + 0.15 * broad + 0.25 * fine * _detail(0.04, np.maximum(fx, fy)))


_PATTERNS = {
    "plain": _plain, "stripes": _stripes, "wainscot": _wainscot, "planks": _planks, "tiles": _tiles, "carpet": _carpet,
}


def _frame_border(s, z, deco: Decoration, width: float) -> np.ndarray:
    """Whether points (s, z) lie within `width` of the decoration's outline."""
    (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
    return (s - s0 < width) | (s1 - s < width) | (z - z0 < width) | (z1 - z < width)


def _picture(deco: Decoration, trim: Material, s, z):
    """A framed picture: a vertical gradient between two colours with a blob of a third, dark frame."""
    (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
    top, bottom, blob, frame = (_rgb(c) for c in deco.colours)
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
    sky = _rgb(deco.colours[0]) * (0.85 + 0.15 * height)
    return np.where(glass, sky, _rgb(trim.colour)), glass


def _door(deco: Decoration, trim: Material, s, z):
    """A door: a slab of colours[0] with two recessed panels and a dark handle, inside a trim-coloured casing."""
    (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
    colour = np.broadcast_to(_rgb(deco.colours[0]), (3, s.size)).copy()
    inset_s = (s > s0 + 0.15) & (s < s1 - 0.15)
    upper = inset_s & (z > 1.15) & (z < z1 - 0.2)
    lower = inset_s & (z > 0.2) & (z < 0.95)
    colour[:, upper | lower] *= 0.85
    handle = (np.abs(s - (s1 - 0.12)) < 0.05) & (np.abs(z - 1.0) < 0.02)
    colour[:, handle] = 0.12
    casing = (s - s0 < 0.06) | (s1 - s < 0.06) | (z1 - z < 0.06)
    colour[:, casing] = _rgb(trim.colour)
    return colour, np.zeros(s.shape, bool)


_DECORATIONS = {"picture": _picture, "window": _window, "door": _door}


def _object_plain(material: Material, local, face, half, footprint) -> np.ndarray:
    return _plain(material, local[0] + local[1], local[2])


def _object_wood(material: Material, local, face, half, footprint) -> np.ndarray:
    """Wood grain along the part's local x."""
    across = np.where(face >= 4, local[1], local[2])  # across the grain: y on top and bottom, height on the sides
    period = 0.01
    warp = 2.5 * _value_noise(local[0] / 0.3, across / 0.04, material.seed)
    grain = np.sin((across / period + warp) * 2 * np.pi) * _detail(period, footprint)
    return _plain(material, local[0], across) * (1 + 0.08 * grain)


def _object_panels(material: Material, local, face, half, footprint) -> np.ndarray:
    """A cabinet: plain sides; its front split into doors (tall) or drawers (low), with seams and handles."""
    colour = _plain(material, local[0] + local[1], local[2])
    front = face == 2
    hx, _, hz = half
    x, z = local[0] + hx, local[2]
    if 2 * hz > 1.0:  # doors: vertical seams every ~0.5 m
        doors = max(int(round(2 * hx / 0.5)), 1)
        door_w = 2 * hx / doors
        seams = _line_coverage(x, door_w, 0.006, footprint)
        # handles sit by the seams nearest the middle; a single door opens from its right edge
        handle_at = np.where((x < hx) | (doors == 1), door_w - 0.05, 0.05)
        handle = (np.abs(x % door_w - handle_at) < 0.015) & (np.abs(z - min(1.0, hz)) < 0.08)
    else:  # drawers: horizontal seams
        drawers = max(int(round(2 * hz / 0.25)), 1)
        seams = _line_coverage(z, 2 * hz / drawers, 0.006, footprint)
        handle = (np.abs(x - hx) < 0.08) & (np.abs((z % (2 * hz / drawers)) - hz / drawers) < 0.012)
    colour = np.where(front, colour * (1 - 0.7 * seams), colour)
    return np.where(front & handle, _rgb((0.15, 0.15, 0.15)), colour)


def _object_books(material: Material, local, face, half, footprint) -> np.ndarray:
    """A bookcase: wooden carcass; on its front, shelves every ~0.35 m holding books of varied colour and height."""
    wood = _plain(material, local[0], local[2])
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
    gaps = _line_coverage(x, 0.035, 0.004, footprint)
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
    return _rgb(material.colour) * (0.9 + 0.15 * blotch + 0.2 * weave * _detail(0.02, footprint))


def _object_bedding(material: Material, local, face, half, footprint) -> np.ndarray:
    """A mattress: a blanket of colour, with a folded-back white sheet at the head (local +y)."""
    blanket = _object_fabric(material, local, face, half, footprint)
    sheet = (face == 5) & (local[1] > half[1] - 0.45)
    fold = (face == 5) & (np.abs(local[1] - (half[1] - 0.45)) < 0.03)
    colour = np.where(sheet, _rgb(material.colour2), blanket)
    return np.where(fold, colour * 0.7, colour)


def _object_cardboard(material: Material, local, face, half, footprint) -> np.ndarray:
    """A cardboard box with a strip of tape across its top."""
    colour = _plain(material, local[0] + local[1], local[2])
    tape = (face == 5) & (np.abs(local[0]) < 0.03)
    return np.where(tape, colour * 1.25, colour)


def _object_screen(material: Material, local, face, half, footprint) -> np.ndarray:
    """A TV or monitor: a dark glossy front with a faint diagonal reflection, black casing elsewhere."""
    gloss = 0.05 + 0.06 * np.clip(1 - np.abs(local[0] / half[0] - local[2] / half[2] + 0.3), 0, 1)
    front = (face == 2) & (np.abs(local[0]) < half[0] - 0.02) & (local[2] > 0.02) & (local[2] < 2 * half[2] - 0.02)
    return np.where(front, gloss, _rgb(material.colour))


def _object_foliage(material: Material, local, face, half, footprint) -> np.ndarray:
    """Leaves: green with strong light/dark blotches at two sizes."""
    u, v = local[0], local[1] + local[2]  # across and up a bush's side, or across its top
    big = _value_noise(u / 0.07, v / 0.07, material.seed)
    small = _value_noise(u / 0.025, v / 0.025, material.seed + 1) * _detail(0.05, footprint)
    return _rgb(material.colour) * (0.4 + 0.8 * big + 0.5 * (small - 0.5))


_OBJECT_PATTERNS = {
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


# ---------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------

def sample_scene(rng: np.random.Generator) -> Scene:
    """A random room, camera, furniture and lighting."""
    size = (rng.uniform(3.0, 8.0), rng.uniform(4.0, 9.0), rng.uniform(2.4, 3.2))
    camera = sample_camera(rng, size)
    room = sample_room(rng, size)
    lighting, pendant = sample_lighting(rng, size, camera.position_m)
    furniture = sample_furniture(rng, size, camera.position_m)
    return Scene(camera, room, tuple(furniture) + pendant, lighting)


def sample_camera(rng: np.random.Generator, size) -> Camera:
    """A hand-held Kinect near the room's y = 0 end, looking roughly down its length, tilted slightly down."""
    width, length, _ = size
    x, y, height = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, min(1.5, 0.3 * length)), rng.uniform(1.0, 1.8)
    position = np.array([x, y, height])
    rotation = camera_rotation(
        np.radians(rng.uniform(-35, 35)), np.radians(rng.uniform(2, 16)), np.radians(np.clip(rng.normal(0, 1.0), -3, 3))
    )
    return Camera(position, rotation)


def _pick(rng: np.random.Generator, options, jitter: float = 0.06) -> tuple:
    """One colour from options, each channel scaled by up to +-jitter so no two rooms match exactly."""
    colour = np.asarray(options[rng.integers(len(options))]) * rng.uniform(1 - jitter, 1 + jitter, 3)
    return tuple(np.clip(colour, 0.0, 1.0))


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(1 << 16))


def sample_room(rng: np.random.Generator, size) -> Room:
    """The room's surfaces: floor, walls (one may be an accent), ceiling, trim, and wall decorations."""
    floor_kind = rng.choice(["planks", "tiles", "carpet"], p=[0.5, 0.25, 0.25])
    if floor_kind == "planks":
        floor = Material(_pick(rng, WOODS), "planks", _seed(rng), scale_m=rng.uniform(0.09, 0.2))
    elif floor_kind == "tiles":
        light = _pick(rng, NEUTRALS[:1] + PAINTS[:2])
        second = light if rng.random() < 0.6 else _pick(rng, NEUTRALS[1:])
        floor = Material(light, "tiles", _seed(rng), colour2=second, scale_m=rng.uniform(0.3, 0.6))
    else:
        floor = Material(_pick(rng, FABRICS + NEUTRALS[2:]), "carpet", _seed(rng))
    paint = _pick(rng, PAINTS, 0.03)
    wall_kind = rng.choice(["plain", "stripes", "wainscot"], p=[0.6, 0.2, 0.2])
    if wall_kind == "stripes":
        second = tuple(np.asarray(paint) * rng.uniform(0.8, 0.92))
    else:
        second = _pick(rng, NEUTRALS[:1] + WOODS[3:4])
    scale = rng.uniform(0.08, 0.3) if wall_kind == "stripes" else rng.uniform(0.8, 1.0)
    walls = [Material(paint, str(wall_kind), _seed(rng), colour2=second, scale_m=scale) for _ in range(4)]
    if rng.random() < 0.3:  # an accent wall in a different paint
        walls[rng.integers(4)] = Material(_pick(rng, PAINTS + FABRICS[1:2] + FABRICS[4:5]), "plain", _seed(rng))
    ceiling = Material(_pick(rng, ((0.92, 0.92, 0.90),), 0.02), "plain", _seed(rng))
    trim = Material(_pick(rng, NEUTRALS[:1] + WOODS[:2]), "plain", _seed(rng))
    return Room(size, floor, tuple(walls), ceiling, trim, rng.uniform(0.07, 0.13), sample_decorations(rng, size))


def sample_decorations(rng: np.random.Generator, size) -> tuple:
    """Up to two pictures, windows or doors per wall, not overlapping along it."""
    width, length, height = size
    decorations = []
    for wall in (WALL_X0, WALL_X1, WALL_Y0, WALL_Y1):
        span = length if wall in (WALL_X0, WALL_X1) else width
        taken = []
        for _ in range(rng.integers(0, 3)):
            kind = rng.choice(["picture", "window", "door"], p=[0.5, 0.3, 0.2])
            if kind == "picture":
                w, h = rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8)
                z0 = rng.uniform(1.3, 1.7) - h / 2
                colours = (  # top, bottom, blob, frame
                    _pick(rng, VIVID + PAINTS, 0.1), _pick(rng, VIVID + FABRICS, 0.1),
                    _pick(rng, VIVID, 0.1), _pick(rng, WOODS + NEUTRALS[:2]),
                )
            elif kind == "window":
                w, h = rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.4)
                z0 = min(rng.uniform(0.8, 1.0), height - h - 0.2)
                colours = (_pick(rng, ((0.95, 0.97, 1.0), (0.80, 0.88, 0.98)), 0.03),)
            else:
                w, h, z0 = rng.uniform(0.8, 0.95), min(rng.uniform(2.0, 2.1), height - 0.15), 0.0
                colours = (_pick(rng, NEUTRALS[:1] + WOODS),)
            s0 = rng.uniform(0.2, max(span - w - 0.2, 0.2))
            if s0 + w > span - 0.1 or any(s0 < t1 + 0.2 and s0 + w > t0 - 0.2 for t0, t1 in taken):
                continue
            taken.append((s0, s0 + w))
            drops = kind == "window" and rng.random() < 0.6
            decorations.append(Decoration(wall, str(kind), (s0, s0 + w), (z0, z0 + h), colours, drops))
    return tuple(decorations)


def sample_lighting(rng: np.random.Generator, size, camera_position) -> tuple[Lighting, tuple]:
    """The lights, and the pendant shade (an emissive cylinder) the lamp hangs in, kept clear of the camera."""
    width, length, height = size
    while True:
        lamp_xy = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.35, 0.8) * length)
        if np.hypot(lamp_xy[0] - camera_position[0], lamp_xy[1] - camera_position[1]) > 0.6:
            break
    shade_bottom = height - rng.uniform(0.35, 0.6)
    lamp_position = (*lamp_xy, shade_bottom - 0.05)
    azimuth, elevation = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(25, 65))
    fill_direction = (np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation))
    warmth = rng.uniform(-1, 1)
    tint = (1.0 + 0.06 * warmth, 1.0, 1.0 - 0.1 * warmth)
    lighting = Lighting(
        ambient=rng.uniform(0.3, 0.45),
        fill_direction=fill_direction,
        fill=rng.uniform(0.2, 0.4),
        lamp_position_m=lamp_position,
        lamp=rng.uniform(0.5, 1.0),
        lamp_reach_m=rng.uniform(1.8, 3.0),
        tint=tint,
        exposure=rng.uniform(0.85, 1.1),
    )
    glow = Material(_pick(rng, ((1.0, 0.96, 0.86), (0.98, 0.98, 0.95)), 0.02), emissive=True)
    radius = rng.uniform(0.15, 0.25)
    pendant = (
        Cylinder(lamp_xy, radius, (shade_bottom, shade_bottom + 0.25), glow),
        Cylinder(lamp_xy, 0.012, (shade_bottom + 0.25, height), Material((0.1, 0.1, 0.1))),  # the cord
    )
    return lighting, pendant


def sample_furniture(rng: np.random.Generator, size, camera_position) -> list:
    """Primitives for several pieces against the walls and several standing free, none overlapping or within
    0.5 m of the camera. Each piece gets a few tries at a free spot before it is dropped."""
    width, length, _ = size
    placed, primitives = [], []
    for _ in range(rng.integers(3, 9)):
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
    y_near = camera_position[1] + 1.0
    for _ in range(rng.integers(2, 9) if y_near < length - 0.4 else 0):
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
        return Material(_pick(rng, WOODS), "wood", _seed(rng))
    return Material(_pick(rng, NEUTRALS), "plain", _seed(rng))


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
        material = Material(_pick(rng, VIVID + NEUTRALS, 0.1), "plain", _seed(rng))
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
    material = Material(_pick(rng, WOODS + NEUTRALS), "panels", _seed(rng))
    return (w / 2, d / 2), [Box((0.0, 0.0), (w / 2, d / 2), (0.0, h), 0.0, material)]


def _wall_shelf(rng: np.random.Generator) -> tuple:
    """A shelf fixed to the wall at chest height or above, with a few things on it."""
    w, d, h = rng.uniform(0.6, 1.4), rng.uniform(0.2, 0.3), rng.uniform(1.1, 1.8)
    wood = _wood_or_paint(rng)
    parts = [Box((0.0, 0.0), (w / 2, d / 2), (h - 0.03, h), 0.0, wood)] + _tabletop_items(rng, w, d * 0.6, h)
    return (w / 2, d / 2), parts


def _bookcase(rng: np.random.Generator) -> tuple:
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(1.2, 2.0)
    material = Material(_pick(rng, WOODS + NEUTRALS[:2]), "books", _seed(rng))
    return (w / 2, d / 2), [Box((0.0, 0.0), (w / 2, d / 2), (0.0, h), 0.0, material)]


def _bed(rng: np.random.Generator) -> tuple:
    """A bed, headboard against the wall: base, mattress with blanket and sheet, pillows."""
    w, d = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.1)
    base_h, top = rng.uniform(0.2, 0.35), rng.uniform(0.45, 0.6)
    frame = _wood_or_paint(rng)
    bedding = Material(_pick(rng, FABRICS + VIVID[:3]), "bedding", _seed(rng), colour2=_pick(rng, NEUTRALS[:1]))
    parts = [
        Box((0.0, 0.0), (w / 2, d / 2), (0.0, base_h), 0.0, frame),
        Box((0.0, -0.01), (w / 2 - 0.02, d / 2 - 0.04), (base_h, top), 0.0, bedding),
        Box((0.0, d / 2 - 0.03), (w / 2 + 0.03, 0.03), (0.0, top + rng.uniform(0.3, 0.6)), 0.0, frame),
    ]
    pillow = Material(_pick(rng, NEUTRALS[:1] + FABRICS, 0.05), "fabric", _seed(rng))
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
    fabric = Material(_pick(rng, FABRICS), "fabric", _seed(rng))
    parts = [
        Box((0.0, 0.0), (w / 2, d / 2), (0.0, seat), 0.0, fabric),
        Box((0.0, d / 2 - 0.1), (w / 2, 0.1), (seat, back), 0.0, fabric),
    ]
    parts += [Box((sx * (w / 2 - 0.08), 0.0), (0.08, d / 2), (seat, arm), 0.0, fabric) for sx in (-1, 1)]
    return (w / 2, d / 2), parts


def _tv_stand(rng: np.random.Generator) -> tuple:
    """A low cabinet with a TV on it."""
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.35, 0.5), rng.uniform(0.4, 0.6)
    material = Material(_pick(rng, WOODS + NEUTRALS), "panels", _seed(rng))
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
    cardboard = Material(_pick(rng, ((0.62, 0.45, 0.28), (0.55, 0.40, 0.25)), 0.05), "cardboard", _seed(rng))
    hx, hy, h = rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.3), rng.uniform(0.2, 0.6)
    parts = [Box((0.0, 0.0), (hx, hy), (0.0, h), 0.0, cardboard)]
    if rng.random() < 0.4:
        scale = rng.uniform(0.5, 0.9)
        parts.append(Box((0.0, 0.0), (hx * scale, hy * scale), (h, h + h * scale), rng.uniform(-0.4, 0.4), cardboard))
    return (hx, hy), parts


def _bin(rng: np.random.Generator) -> tuple:
    r = rng.uniform(0.12, 0.22)
    material = Material(_pick(rng, VIVID + NEUTRALS), "plain", _seed(rng))
    return (r, r), [Cylinder((0.0, 0.0), r, (0.0, rng.uniform(0.3, 0.6)), material)]


def _plant(rng: np.random.Generator) -> tuple:
    """A pot with a leafy bush above it."""
    r, pot = rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.4)
    bush = r * rng.uniform(1.2, 1.6)
    terracotta, white, black = (0.55, 0.30, 0.20), (0.85, 0.85, 0.82), (0.2, 0.2, 0.22)
    pot_material = Material(_pick(rng, (terracotta, white, black)), "plain", _seed(rng))
    leaves = Material(_pick(rng, ((0.18, 0.38, 0.14), (0.25, 0.45, 0.20)), 0.1), "foliage", _seed(rng))
    parts = [
        Cylinder((0.0, 0.0), r, (0.0, pot), pot_material),
        Cylinder((0.0, 0.0), bush, (pot, pot + rng.uniform(0.3, 0.9)), leaves),
    ]
    return (bush, bush), parts


def _floor_lamp(rng: np.random.Generator) -> tuple:
    """A floor lamp: base disc, pole, glowing shade."""
    top, r = rng.uniform(1.4, 1.7), rng.uniform(0.16, 0.24)
    metal = Material(_pick(rng, NEUTRALS[1:3]), "plain", _seed(rng))
    parts = [
        Cylinder((0.0, 0.0), 0.15, (0.0, 0.03), metal),
        Cylinder((0.0, 0.0), 0.015, (0.03, top - 0.3), metal),
        Cylinder((0.0, 0.0), r, (top - 0.3, top), Material(_pick(rng, ((0.98, 0.92, 0.78),), 0.02), emissive=True)),
    ]
    return (r, r), parts


_WALL_PIECES = (_cabinet, _bookcase, _bed, _sofa, _desk, _tv_stand, _table, _wall_shelf, _boxes, _plant)
_WALL_WEIGHTS = (0.2, 0.14, 0.08, 0.1, 0.13, 0.08, 0.08, 0.07, 0.07, 0.05)
_FREE_PIECES = (_dining_set, _table, _chair, _boxes, _bin, _plant, _floor_lamp)
_FREE_WEIGHTS = (0.14, 0.12, 0.24, 0.24, 0.1, 0.1, 0.06)
