"""Inference's two steps around a depth network, shared by predict.py, export.py and data.py: an RGB image becomes
the network's input (`resize_rgb`), and the network's output becomes depth in metres (`network_depth_m`, with
DenseDepth's flip average). predict.py runs them eagerly around a traced forward pass; export.py writes them into
the exported graph (export.MetresModel), so a .keras model and its export compute the same arithmetic.
"""
from __future__ import annotations

import tensorflow as tf

from depth import DepthScale


def resize_rgb(rgb_uint8, size):
    """RGB uint8 [..., H, W, 3] -> float32 [..., h, w, 3] in [0, 1]: unchanged at the same size, an area average
    (a box filter, which never aliases) when shrinking both sides, else bilinear with antialiasing.

    Area is 4x cheaper than antialiased bilinear here and differs from it by under one grey level on average.
    """
    hw, size_t = tf.shape(rgb_uint8)[-3:-1], tf.constant(size, tf.int32)
    resized = tf.case([
        (tf.reduce_all(hw == size_t), lambda: tf.cast(rgb_uint8, tf.float32)),
        (tf.reduce_all(hw >= size_t), lambda: tf.image.resize(rgb_uint8, size, method="area")),
    ], default=lambda: tf.image.resize(rgb_uint8, size, method="bilinear", antialias=True))
    resized = tf.ensure_shape(resized, [*rgb_uint8.shape[:-3], *size, 3])  # the same-size branch knows no size
    return tf.clip_by_value(resized / 255.0, 0.0, 1.0)


def network_depth_m(forward, x, depth_scale: DepthScale, *, flip: bool):
    """The network -> metres graph: x float32 [B, h, w, 3] in [0, 1] at the network's input size -> depth float32
    [B, h', w', 1] in metres at its output size, clipped to [depth_scale.min_depth_m, max_depth_m] (its decode).

    forward(x) -> the network's output: a Keras model called with training=False, a tf.function of one, or a
    backends.ExportedModel (whose output is metres already: its scale only clips). flip averages, in metres, the
    direct prediction with the mirrored image's, mirrored back (DenseDepth's test-time augmentation, Alhashim &
    Wonka 2018), in one call on [2B, h, w, 3]; averaged at the network's size because resizing commutes with
    mirroring.
    """
    if flip:
        x = tf.concat([x, tf.reverse(x, axis=[2])], axis=0)  # [2B, h, w, 3]: one network call for both
    depth = depth_scale.decode(forward(x))  # [B or 2B, h', w', 1] metres
    if flip:
        direct, mirrored = tf.split(depth, 2, axis=0)
        depth = (direct + tf.reverse(mirrored, axis=[2])) / 2.0
    return depth
