"""What a Kinect returns for a scene's exact z-depth: metres where it measures, 0.0 where it leaves a hole.

The holes mimic NYU Depth V2's raw Kinect depth: out of range, glossy or transparent surfaces, the IR
projector's shadow beside near edges, ragged depth edges and a few random blobs.
"""
from __future__ import annotations

import numpy as np

from synth.raycast import PixelGrid

KINECT_RANGE_M = (0.5, 10.0)  # nearer or farther than this the Kinect returns no depth
KINECT_BASELINE_M = 0.075  # IR projector to IR camera: sets how wide the shadow beside each near edge is


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
