"""A random scene: the room's size and surfaces, the hand-held camera, wall decorations, the lights and the furniture.

Every draw comes from one numpy Generator in a fixed order, so a seed always makes the same scene.
Sizes are metres in scene.py's world frame.
"""
from __future__ import annotations

import numpy as np

from synth.furniture import sample_furniture
from synth.scene import (
    FABRICS, NEUTRALS, PAINTS, VIVID, WALL_X0, WALL_X1, WALL_Y0, WALL_Y1, WOODS, Camera, Cylinder, Decoration,
    Lighting, Material, Room, Scene, camera_rotation, noise_seed, pick_colour,
)


def sample_scene(rng: np.random.Generator) -> Scene:
    """A random room, camera, furniture and lighting."""
    size = (rng.uniform(2.5, 5.5), rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.0))
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
        np.radians(rng.uniform(-50, 50)), np.radians(rng.uniform(2, 16)), np.radians(np.clip(rng.normal(0, 1.0), -3, 3))
    )
    return Camera(position, rotation)


def sample_room(rng: np.random.Generator, size) -> Room:
    """The room's surfaces: floor, walls (one may be an accent), ceiling, trim, and wall decorations."""
    floor_kind = rng.choice(["planks", "tiles", "carpet"], p=[0.5, 0.25, 0.25])
    if floor_kind == "planks":
        floor = Material(pick_colour(rng, WOODS), "planks", noise_seed(rng), scale_m=rng.uniform(0.09, 0.2))
    elif floor_kind == "tiles":
        light = pick_colour(rng, NEUTRALS[:1] + PAINTS[:2])
        second = light if rng.random() < 0.6 else pick_colour(rng, NEUTRALS[1:])
        floor = Material(light, "tiles", noise_seed(rng), colour2=second, scale_m=rng.uniform(0.3, 0.6))
    else:
        floor = Material(pick_colour(rng, FABRICS + NEUTRALS[2:]), "carpet", noise_seed(rng))
    paint = pick_colour(rng, PAINTS, 0.03)
    wall_kind = rng.choice(["plain", "stripes", "wainscot"], p=[0.6, 0.2, 0.2])
    if wall_kind == "stripes":
        second = tuple(np.asarray(paint) * rng.uniform(0.8, 0.92))
    else:
        second = pick_colour(rng, NEUTRALS[:1] + WOODS[3:4])
    scale = rng.uniform(0.08, 0.3) if wall_kind == "stripes" else rng.uniform(0.8, 1.0)
    walls = [Material(paint, str(wall_kind), noise_seed(rng), colour2=second, scale_m=scale) for _ in range(4)]
    if rng.random() < 0.3:  # an accent wall in a different paint
        accent = pick_colour(rng, PAINTS + FABRICS[1:2] + FABRICS[4:5])
        walls[rng.integers(4)] = Material(accent, "plain", noise_seed(rng))
    ceiling = Material(pick_colour(rng, ((0.92, 0.92, 0.90),), 0.02), "plain", noise_seed(rng))
    trim = Material(pick_colour(rng, NEUTRALS[:1] + WOODS[:2]), "plain", noise_seed(rng))
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
                    pick_colour(rng, VIVID + PAINTS, 0.1), pick_colour(rng, VIVID + FABRICS, 0.1),
                    pick_colour(rng, VIVID, 0.1), pick_colour(rng, WOODS + NEUTRALS[:2]),
                )
            elif kind == "window":
                w, h = rng.uniform(0.8, 1.6), rng.uniform(1.0, 1.4)
                z0 = min(rng.uniform(0.8, 1.0), height - h - 0.2)
                colours = (pick_colour(rng, ((0.95, 0.97, 1.0), (0.80, 0.88, 0.98)), 0.03),)
            else:
                w, h, z0 = rng.uniform(0.8, 0.95), min(rng.uniform(2.0, 2.1), height - 0.15), 0.0
                colours = (pick_colour(rng, NEUTRALS[:1] + WOODS),)
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
    glow = Material(pick_colour(rng, ((1.0, 0.96, 0.86), (0.98, 0.98, 0.95)), 0.02), emissive=True)
    radius = rng.uniform(0.15, 0.25)
    pendant = (
        Cylinder(lamp_xy, radius, (shade_bottom, shade_bottom + 0.25), glow),
        Cylinder(lamp_xy, 0.012, (shade_bottom + 0.25, height), Material((0.1, 0.1, 0.1))),  # the cord
    )
    return lighting, pendant
