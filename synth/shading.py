"""Shading: every pixel's albedo, normal and light, then the colour camera's response -> the RGB image.

Pixels are regrouped by the surface they see (`Surfaces`), so each surface is textured and lit on one
contiguous run of samples; coordinates are scene.py's world frame, in metres.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synth import textures
from synth.raycast import Hits, PixelGrid, corners, image_window
from synth.scene import (
    CEILING, FIRST_PRIMITIVE, FLOOR, WALL_X0, WALL_X1, Box, Camera, Cylinder, Lighting, Room, Scene,
)

# ---------------------------------------------------------------------------
# What each pixel sees: albedo and normal
# ---------------------------------------------------------------------------

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
            albedo[:, run] = textures.PATTERNS[room.floor.pattern](room.floor, p[0], p[1], footprint[0], footprint[1])
        elif face == CEILING:
            albedo[:, run] = textures.plain(room.ceiling, p[0], p[1])
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
    colour = textures.PATTERNS[room.walls[wall].pattern](room.walls[wall], s, z, fs, fz)
    colour = np.where(z < room.baseboard_m, textures.rgb(room.trim.colour), colour)
    # the baseboard's top edge casts a thin dark line, a useful floor-wall cue
    colour *= 1.0 - 0.35 * textures.line_coverage(z - room.baseboard_m, 1e3, 0.008, fz)
    glows = np.zeros(s.shape, bool)
    glass = np.zeros(s.shape, bool)
    for deco in room.decorations:
        if deco.wall != wall:
            continue
        (s0, s1), (z0, z1) = deco.s_range_m, deco.z_range_m
        inside = (s >= s0) & (s <= s1) & (z >= z0) & (z <= z1)
        if inside.any():
            c, g = textures.DECORATIONS[deco.kind](deco, room.trim, s[inside], z[inside])
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
    colour = textures.OBJECT_PATTERNS[primitive.material.pattern](primitive.material, local, face, half, footprint)
    return colour, normal


# ---------------------------------------------------------------------------
# Light and the camera
# ---------------------------------------------------------------------------

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
