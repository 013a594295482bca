"""Ray casting: the camera's pixel rays, and the nearest surface along each with its z-depth.

Every pixel's ray is scaled so its camera-frame z is 1, so the ray parameter at a hit *is* the z-depth a
Kinect reports (not the ray length). Coordinates are scene.py's world frame, in metres.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

import nyu
from synth.scene import FIRST_PRIMITIVE, Box, Camera, Cylinder

# ---------------------------------------------------------------------------
# The camera's pixels
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PixelGrid:
    """A pinhole camera's pixels as rays; pixel (u, v) is centred at integer u, v."""

    intrinsics: dict  # fx, fy, cx, cy in pixels
    rays: np.ndarray  # float32 [3, h, w] camera-frame ray through each pixel centre, z component 1
    ray_length: np.ndarray  # float32 [h, w] |ray|, metres of travel per metre of depth

    @property
    def frame_hw(self) -> tuple:
        return self.ray_length.shape


@functools.cache
def nyu_pixel_grid() -> PixelGrid:
    """NYU's 640x480 colour camera as a grid of rays, built once per process."""
    return pixel_grid(nyu.INTRINSICS, nyu.FRAME_HW)


def pixel_grid(intrinsics: dict, frame_hw: tuple) -> PixelGrid:
    """Rays through the centres of a (h, w) pixel grid (pixel (u, v) centred at integer u, v)."""
    h, w = frame_hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (u - intrinsics["cx"]) / intrinsics["fx"]
    y = (v - intrinsics["cy"]) / intrinsics["fy"]
    rays = np.stack([x, y, np.ones_like(x)]).astype(np.float32)
    return PixelGrid(dict(intrinsics), rays, np.sqrt(x * x + y * y + 1.0).astype(np.float32))


# ---------------------------------------------------------------------------
# Ray casting
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Hits:
    """What each pixel's ray hits first."""

    depth_m: np.ndarray  # float32 [h, w] z-depth in metres
    surface: np.ndarray  # int16 [h, w]: a room face id, or FIRST_PRIMITIVE + primitive index
    rays: np.ndarray  # float32 [3, h, w] world-frame rays, camera-frame z = 1


def trace(camera: Camera, room_size_m: tuple, primitives, grid: PixelGrid) -> Hits:
    """The nearest surface along every pixel's ray: the room's inside, then each primitive within its image box."""
    # written out rather than a matmul: BLAS would spin up threads that fight dataset.py's rendering processes
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
