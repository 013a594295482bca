"""One synthetic frame: a random indoor scene, ray-cast, shaded, and seen through a Kinect's depth holes.

A frame is a box-shaped room (floor, four walls, ceiling) holding box and cylinder furniture, ray-cast at
640x480 through NYU's colour-camera intrinsics (nyu.INTRINSICS), textured in world coordinates, shaded,
and paired with the z-depth a Kinect would return, holes included.
"""
from __future__ import annotations

import numpy as np

from synth.camera import camera_effects
from synth.kinect import kinect_depth
from synth.raycast import nyu_pixel_grid, trace
from synth.rooms import sample_scene
from synth.shading import appearance, group_by_surface, shade


def render_frame(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic indoor frame, the same for the same seed.

    Returns (rgb uint8 [480, 640, 3], depth float32 [480, 640] in metres, 0.0 = invalid).
    """
    rng = np.random.default_rng(seed)
    grid = nyu_pixel_grid()
    scene = sample_scene(rng)
    hits = trace(scene.camera, scene.room.size_m, scene.primitives, grid)
    surfaces = group_by_surface(hits, scene.camera, len(scene.primitives))
    looks = appearance(scene, surfaces, grid)
    rgb = shade(scene, hits, surfaces, looks, grid, rng)
    depth = kinect_depth(hits.depth_m, surfaces.to_image(looks.no_return, grid.frame_hw), grid, rng)
    return camera_effects(rgb, rng), depth
