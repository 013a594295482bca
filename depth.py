"""Depth in the network: the `DepthScale` that maps metres to what a model predicts, and packed targets.

Depth is in metres everywhere outside the network, 0 where a pixel has none (on disk it is stored by one of
nyu.DEPTH_CODECS). In the network it is encoded by a `DepthScale`: DenseDepth's inverse depth (max_depth_m /
depth, Alhashim & Wonka 2018) by default, or plain metres. Training targets travel with their validity
mask as one tensor (`pack_target`), because Keras hands a loss a single y_true.
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf

import nyu

# mode -> (encode(depth_m, max_m), decode(y, max_m)); each pair is exact inverses on [min, max].
_SCALE_MODES = {
    "inverse": (lambda d, max_m: max_m / d, lambda y, max_m: max_m / y),
    "metres": (lambda d, max_m: d, lambda y, max_m: y),
}
SCALE_MODES = tuple(_SCALE_MODES)


@dataclasses.dataclass(frozen=True)
class DepthScale:
    """How depth in metres maps to the values the network predicts.

    mode "inverse": y = max_depth_m / clip(depth, min, max), so y is in [1, max/min]
    (DenseDepth's DepthNorm, [1, 100] for 0.1-10 m). mode "metres": y = clip(depth, min, max).
    """

    mode: str = "inverse"
    min_depth_m: float = nyu.MIN_DEPTH_M
    max_depth_m: float = nyu.MAX_DEPTH_M

    def __post_init__(self):
        if self.mode not in _SCALE_MODES:
            raise ValueError(f"depth mode {self.mode!r} is not one of {sorted(_SCALE_MODES)}")
        if not 0 < self.min_depth_m < self.max_depth_m:
            raise ValueError(
                f"depth range must satisfy 0 < min < max, got min {self.min_depth_m} m, max {self.max_depth_m} m"
            )

    def encode(self, depth_m):
        """Depth in metres (any shape) -> network target, same shape, float32."""
        depth_m = tf.clip_by_value(tf.cast(depth_m, tf.float32), self.min_depth_m, self.max_depth_m)
        return _SCALE_MODES[self.mode][0](depth_m, self.max_depth_m)

    def decode(self, y):
        """Network output (any shape) -> depth in metres, clipped to [min_depth_m, max_depth_m]."""
        lo, hi = self.value_range
        y = tf.clip_by_value(tf.cast(y, tf.float32), lo, hi)
        return tf.clip_by_value(_SCALE_MODES[self.mode][1](y, self.max_depth_m), self.min_depth_m, self.max_depth_m)

    @property
    def value_range(self) -> tuple[float, float]:
        """(lowest, highest) encoded value; the highest is SSIM's max_val (DenseDepth: 1000/10)."""
        ends = sorted(_SCALE_MODES[self.mode][0](d, self.max_depth_m) for d in (self.min_depth_m, self.max_depth_m))
        return float(ends[0]), float(ends[1])

    def to_config(self) -> dict:
        """{"mode", "min_depth_m", "max_depth_m"}: what DepthOutput saves, DepthScale(**it) rebuilds."""
        return dataclasses.asdict(self)


def pack_target(target, mask):
    """Stack the encoded depth [..., h, w, 1] and its validity mask [..., h, w, 1] into y_true [..., h, w, 2].

    Keras hands the loss one y_true tensor, so the mask travels as its second channel.
    """
    return tf.concat([tf.cast(target, tf.float32), tf.cast(mask, tf.float32)], axis=-1)


def unpack_target(y_true):
    """y_true [..., h, w, 2] -> (encoded depth [..., h, w, 1], mask [..., h, w, 1] of 0.0/1.0)."""
    return y_true[..., :1], y_true[..., 1:2]
