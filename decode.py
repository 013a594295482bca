"""Decoding a frame's blobs in the graph (the input pipeline's second stage, data.frames): RGB uint8 turned upright
by its EXIF orientation, JPEGs at the smallest scale still covering the network input, and depth in metres by
its codec (nyu.DEPTH_CODECS), 0 where invalid.
"""
from __future__ import annotations

import tensorflow as tf

import nyu
from readers import EXIF_TURNS, SWAPPED_ORIENTATIONS


def decode_rgb(blob, hw, rgb_format, min_hw=None, orientation=1):
    """An RGB blob stored as rgb_format (readers.RGB_FORMATS), its raw hw and EXIF orientation (1-8) -> uint8
    [H, W, 3] upright; JPEGs at a reduced scale when min_hw (h, w, upright) is given (see _decode_jpeg_at_least)."""
    if rgb_format == "raw":
        return tf.reshape(tf.io.decode_raw(blob, tf.uint8), [hw[0], hw[1], 3])
    decode_any = lambda: tf.io.decode_image(blob, channels=3, dtype=tf.uint8, expand_animations=False)  # noqa: E731
    if min_hw is None:
        return upright(decode_any(), orientation)
    turned = tf.reduce_any(tf.equal(orientation, SWAPPED_ORIENTATIONS))
    stored_min_hw = tf.where(turned, tf.constant(min_hw[::-1]), tf.constant(min_hw))
    is_jpeg = tf.strings.substr(blob, 0, 2) == b"\xff\xd8"
    return upright(tf.cond(is_jpeg, lambda: _decode_jpeg_at_least(blob, stored_min_hw), decode_any), orientation)


def upright(rgb, orientation):
    """An image [H, W, C] as stored, and its EXIF orientation (1-8, int scalar) -> the image upright
    (readers.EXIF_TURNS). Gathered from the table, not branched: a branch per frame costs ~0.5 ms."""
    turns = tf.gather(tf.constant([EXIF_TURNS[o] for o in sorted(EXIF_TURNS)]), tf.cast(orientation, tf.int32) - 1)
    rgb = tf.transpose(rgb, tf.where(turns[0], [1, 0, 2], [0, 1, 2]))  # the identity permutation copies nothing
    return tf.reverse(rgb, tf.boolean_mask([1, 0], turns[1:]))  # nor does reversing no axis


_JPEG_RATIOS = (1, 2, 4, 8)  # the downscales libjpeg can apply while decoding


def _decode_jpeg_at_least(blob, min_hw):
    """JPEG bytes -> uint8 [ceil(H / r), ceil(W / r), 3] for the largest r in _JPEG_RATIOS that keeps both sides
    at least min_hw (h, w). libjpeg downscales inside the inverse DCT, so a 640x480 frame for a 320x240 input
    costs less than its full decode alone, and needs no resize after."""
    shape = tf.io.extract_jpeg_shape(blob)[:2]
    fits = [tf.reduce_all(shape // r >= tf.cast(min_hw, tf.int32)) for r in _JPEG_RATIOS]
    largest = tf.maximum(tf.reduce_sum(tf.cast(tf.stack(fits), tf.int32)) - 1, 0)  # fits is True..True False..False
    return tf.switch_case(largest, [lambda r=r: tf.io.decode_jpeg(blob, channels=3, ratio=r) for r in _JPEG_RATIOS])


def finite_positive(depth):
    """Depth with every invalid value (NaN, inf, zero or negative) set to 0."""
    return tf.where(tf.math.is_finite(depth) & (depth > 0), depth, 0.0)


def decode_depth(blob, hw, codec: nyu.DepthCodec):
    """A depth blob stored as `codec` (a Split's depth_codec), and its raw hw -> float32 [H, W, 1] metres,
    0 = invalid (and codec.saturated). A frame handed over as an array is raw float32 metres (readers.raw_depth).

    PNG values are never negative or non-finite, so only raw floats go through finite_positive.
    """
    raw = lambda: finite_positive(tf.reshape(tf.io.decode_raw(blob, tf.float32), [hw[0], hw[1], 1]))  # noqa: E731
    if not codec.png:
        return raw()
    return tf.cond(hw[0] > 0, raw, lambda: _png_metres(blob, codec))


def _png_metres(blob, codec: nyu.DepthCodec):
    values = tf.io.decode_png(blob, channels=1, dtype=tf.as_dtype(codec.dtype))
    depth_m = tf.cast(values, tf.float32) / codec.units_per_metre
    return depth_m if codec.saturated is None else tf.where(values == codec.saturated, 0.0, depth_m)
