"""Training-time augmentation, DenseDepth's (augment.py there: a flip of image and depth together, a channel swap)
plus mild photometric jitter, every draw stateless from the frame's seed (data.frame_seed).

It is cut in two so the CPU pipeline keeps RGB in uint8: the input pipeline (data.make_dataset) flips image and
target and draws each frame's colour change (`colour_draws`, six numbers); the train step applies it on the device
(`apply_colour`: float conversion, channel order, brightness, contrast, gamma), where the float passes over every
pixel cost least (loop.Steps). Without a train step in between, make_dataset applies it itself, per frame.
"""
from __future__ import annotations

import dataclasses
import itertools

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation (DenseDepth's flip and channel swap, plus mild photometric jitter).

    flip and channel_swap are probabilities; brightness is the largest added offset (images in [0, 1]),
    contrast and gamma the largest relative change (factor drawn from [1 - x, 1 + x]).
    """

    flip: float = 0.5
    channel_swap: float = 0.25
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1

    @property
    def colour(self) -> bool:
        """Whether any colour change can be drawn (else apply_colour would be the identity)."""
        return any((self.channel_swap, self.brightness, self.contrast, self.gamma))


_CHANNEL_ORDERS = list(itertools.permutations(range(3)))  # the 6 RGB orders (a list: no TF op at import)
_IDENTITY = (0.0, 1.0, 2.0, 0.0, 1.0, 1.0)  # colour_draws that change nothing
COLOUR_DRAWS = len(_IDENTITY)


def _sub_seeds(seed):
    """The frame's six stateless seeds: flip, swap, order, brightness, contrast, gamma (one split of `seed`)."""
    return tf.unstack(tf.random.split(seed, 6))


def flip(rgb, y_true, seed, config: Augment):
    """The geometric half, on the CPU: rgb [h, w, 3] (any dtype) and y_true [h', w', 2] flipped left-right together
    with probability config.flip, drawn from the frame's stateless seed (int64 [2])."""
    # tf.cond, not tf.where: the flipped copies are only made when they are used.
    flipped = tf.random.stateless_uniform([], _sub_seeds(seed)[0]) < config.flip
    return tf.cond(flipped, lambda: (tf.image.flip_left_right(rgb), tf.image.flip_left_right(y_true)),
                   lambda: (rgb, y_true))


def colour_draws(seed, config: Augment):
    """The colour half's random numbers for one frame: float32 [6] = (the channel order's three source channels,
    the brightness offset, the contrast factor, the gamma), from the frame's stateless seed (int64 [2]); channels
    swap with probability config.channel_swap, the others are uniform in config's ranges."""
    _, s_swap, s_order, s_bright, s_contrast, s_gamma = _sub_seeds(seed)
    swap = tf.random.stateless_uniform([], s_swap) < config.channel_swap
    drawn = tf.gather(tf.constant(_CHANNEL_ORDERS, tf.float32), tf.random.stateless_uniform([], s_order, 0, 6, tf.int32))
    order = tf.where(swap, drawn, tf.constant(_IDENTITY[:3]))
    uniform = lambda s, half: tf.random.stateless_uniform([1], s, -half, half)  # noqa: E731  0 when half is 0
    return tf.concat([order, uniform(s_bright, config.brightness), 1.0 + uniform(s_contrast, config.contrast),
                      1.0 + uniform(s_gamma, config.gamma)], axis=0)


def to_float(rgb):
    """RGB uint8 -> float32 in [0, 1] (what every model takes, model.py); float input is returned as it is."""
    return tf.cast(rgb, tf.float32) / 255.0 if rgb.dtype == tf.uint8 else rgb


def apply_colour(rgb, draws):
    """rgb [..., H, W, 3] (uint8, or float in [0, 1]) and colour_draws [..., 6] (one per image) -> float32 in [0, 1]:
    channels reordered, brightness added, contrast scaled about each channel's mean (tf.image.adjust_contrast's
    rule), clipped, then gamma. On the device: every step of it passes over every pixel."""
    rgb = to_float(rgb)
    order = tf.cast(draws[..., :3], tf.int32)
    rgb = tf.gather(rgb, order, axis=-1, batch_dims=order.shape.rank - 1)
    per_image = lambda k: draws[..., k, None, None, None]  # noqa: E731  [..., 1, 1, 1] against [..., H, W, 3]
    mean = tf.reduce_mean(rgb, axis=[-3, -2], keepdims=True)
    # brightness then contrast: (x + b - (mean + b)) * c + (mean + b)
    rgb = tf.clip_by_value((rgb - mean) * per_image(4) + mean + per_image(3), 0.0, 1.0)
    # x ** g as exp(g log x): 5x faster than TF's pow on CPU; log(0) = -inf gives exp(-inf) = 0 = 0 ** g.
    return tf.exp(per_image(5) * tf.math.log(rgb))
