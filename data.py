"""The input pipeline: frames -> examples -> augment -> batch, on tf.data (and `python data.py inspect`).

A split's frames (layouts.py finds them in any supported layout) are read a few at a time as encoded
blobs, decoded in the graph to RGB uint8 and depth in metres (nyu.DEPTH_CODECS), resized to the network's
input and output sizes, encoded by a `depth.DepthScale`, augmented for training and batched.

    python data.py inspect data/synth        # frame counts and depth statistics of any dataset, as JSON
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import dataclasses
import itertools
import json
import logging
import sys

import numpy as np
import tensorflow as tf
from tqdm import tqdm

import nyu
from depth import DepthScale, pack_target
from layouts import EXPECTED_LAYOUTS, DataError, FrameError, Split, open_source

LOG = logging.getLogger("depth.data")

# ---------------------------------------------------------------------------
# Reading and decoding frames
# ---------------------------------------------------------------------------

# Frames read per Python call: every tf.numpy_function call costs about 1 ms of GIL hand-offs whatever it does
# (reading a frame's bytes takes 0.04 ms), which capped the whole pipeline at ~850 frames/s on 2 cores when it
# read one frame per call; 8 per call lifts the reading stage to ~3500 frames/s (python -m benchmarks profiles it).
READ_CHUNK = 8


def read_frames(split: Split, strict: bool):
    """indices int64 [n] -> (ok bool [n], rgb blobs string [n], depth blobs string [n], raw (h, w) int32 [n, 2]),
    the Python side of `blobs` (a tf.numpy_function). Bad frames are logged, listed in split.skipped and come
    back with ok False; with strict=True a bad frame raises DataError naming it instead.
    """

    def read_one(index: int):
        try:
            rgb, depth, hw = split.read(index)
            return True, rgb, depth, np.asarray(hw, np.int32)
        except FrameError as err:
            problem = str(err)
        if strict:
            raise DataError(f"{split.describe(index)}: {problem} (drop --strict to skip such frames with a warning)")
        LOG.warning("skipping %s", split.skip(index, problem))
        return False, b"", b"", np.zeros(2, np.int32)

    def read(indices):
        ok, rgb, depth, hw = zip(*(read_one(int(index)) for index in indices))
        return np.array(ok), np.array(rgb, object), np.array(depth, object), np.stack(hw)

    return read


def decode_rgb(blob, hw, rgb_format, min_hw=None):
    """An RGB blob stored as rgb_format (readers.RGB_FORMATS), and its raw hw -> uint8 [H, W, 3]; JPEGs at a
    reduced scale when min_hw (h, w) is given (see _decode_jpeg_at_least)."""
    if rgb_format == "raw":
        return tf.reshape(tf.io.decode_raw(blob, tf.uint8), [hw[0], hw[1], 3])
    decode_any = lambda: tf.io.decode_image(blob, channels=3, dtype=tf.uint8, expand_animations=False)  # noqa: E731
    if min_hw is None:
        return decode_any()
    is_jpeg = tf.strings.substr(blob, 0, 2) == b"\xff\xd8"
    return tf.cond(is_jpeg, lambda: _decode_jpeg_at_least(blob, min_hw), decode_any)


_JPEG_RATIOS = (1, 2, 4, 8)  # the downscales libjpeg can apply while decoding


def _decode_jpeg_at_least(blob, min_hw):
    """JPEG bytes -> uint8 [ceil(H / r), ceil(W / r), 3] for the largest r in _JPEG_RATIOS that keeps both sides
    at least min_hw (h, w). libjpeg downscales inside the inverse DCT, so a 640x480 frame for a 320x240 input
    costs less than its full decode alone, and needs no resize after."""
    shape = tf.io.extract_jpeg_shape(blob)[:2]
    fits = [tf.reduce_all(shape // r >= tf.constant(min_hw, tf.int32)) for r in _JPEG_RATIOS]
    largest = tf.maximum(tf.reduce_sum(tf.cast(tf.stack(fits), tf.int32)) - 1, 0)  # fits is True..True False..False
    return tf.switch_case(largest, [lambda r=r: tf.io.decode_jpeg(blob, channels=3, ratio=r) for r in _JPEG_RATIOS])


def _finite_positive(depth):
    """Depth with every invalid value (NaN, inf, zero or negative) set to 0."""
    return tf.where(tf.math.is_finite(depth) & (depth > 0), depth, 0.0)


def decode_depth(blob, hw, depth_format):
    """A depth blob stored as nyu.DEPTH_CODECS[depth_format], and its raw hw -> float32 [H, W, 1] metres, 0 = invalid.

    PNG values are never negative or non-finite, so only raw floats go through _finite_positive.
    """
    codec = nyu.DEPTH_CODECS[depth_format]
    if codec.png:
        values = tf.io.decode_png(blob, channels=1, dtype=tf.as_dtype(codec.dtype))
        return tf.cast(values, tf.float32) / codec.units_per_metre
    values = tf.reshape(tf.io.decode_raw(blob, tf.as_dtype(codec.dtype)), [hw[0], hw[1], 1])
    return _finite_positive(tf.cast(values, tf.float32) / codec.units_per_metre)


def blobs(split: Split, *, strict: bool = False, shuffle_seed: int | None = None,
          chunk: int = READ_CHUNK, select=None) -> tf.data.Dataset:
    """The reading stage of `frames`: dicts of the frame's undecoded rgb and depth blobs (string), raw hw
    (int32 [2]) and index (int64), bad frames already left out. Python reads `chunk` frames per call.
    select: None, or a function of the (shuffled) frame-index dataset returning the indices to read (a worker's
    shard: see train.py), applied before any file is read."""
    read = read_frames(split, strict)
    indices = tf.data.Dataset.range(len(split))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    if select is not None:
        indices = select(indices)

    def load(chunk_indices):
        ok, rgb, depth, hw = tf.numpy_function(read, [chunk_indices], [tf.bool, tf.string, tf.string, tf.int32])
        return {"ok": tf.reshape(ok, [-1]), "rgb": tf.reshape(rgb, [-1]), "depth": tf.reshape(depth, [-1]),
                "hw": tf.reshape(hw, [-1, 2]), "index": chunk_indices}

    loaded = indices.batch(chunk).map(load, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return loaded.filter(lambda frame: frame["ok"])


def frames(split: Split, *, strict: bool = False, shuffle_seed: int | None = None,
           rgb_min_hw=None, select=None) -> tf.data.Dataset:
    """Full-resolution frames of `split`: dicts of rgb uint8 [H, W, 3], depth float32 [H, W, 1] metres
    (0 = invalid) and index (int64, the frame's position in split.keys).

    Frames are read a few at a time (never the whole dataset); undecodable ones are skipped with a warning
    (listed in split.skipped) unless strict. shuffle_seed reshuffles the order every epoch. With rgb_min_hw
    (h, w), JPEG images come decoded at the smallest of 1, 1/2, 1/4, 1/8 scale still covering it. select: see `blobs`.
    """
    def decode(frame):
        return {
            "rgb": decode_rgb(frame["rgb"], frame["hw"], split.rgb_format, rgb_min_hw),
            "depth": decode_depth(frame["depth"], frame["hw"], split.depth_format),
            "index": frame["index"],
        }

    decoded = blobs(split, strict=strict, shuffle_seed=shuffle_seed, select=select).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    # A whole-looking file can still fail to decode (corrupt inside): TF logs it and the frame is dropped.
    return decoded if strict else decoded.ignore_errors(log_warning=True)


# ---------------------------------------------------------------------------
# Training / validation examples
# ---------------------------------------------------------------------------

def resize_depth(depth_m, size):
    """Depth [H, W, 1] metres (0 = invalid) -> (depth [h, w, 1], mask [h, w, 1] of 0/1) at `size` (h, w).

    An area average over valid pixels only, so holes never blend into their neighbours; an output pixel
    is valid when at least half of the input pixels under it were.
    """
    valid = tf.cast(depth_m > 0, tf.float32)
    weight = tf.image.resize(valid, size, method="area")
    total = tf.image.resize(depth_m * valid, size, method="area")
    mask = tf.cast(weight >= 0.5, tf.float32)
    return tf.math.divide_no_nan(total, weight) * mask, mask


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


def to_example(frame, input_hw, target_hw, depth_scale: DepthScale):
    """A decoded frame -> (rgb float32 [*input_hw, 3] in [0, 1], y_true [*target_hw, 2] = pack_target)."""
    depth, mask = resize_depth(frame["depth"], target_hw)
    target = tf.where(mask > 0, depth_scale.encode(depth), 0.0)
    return resize_rgb(frame["rgb"], input_hw), pack_target(target, mask)


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


_CHANNEL_ORDERS = list(itertools.permutations(range(3)))  # the 6 RGB orders (a list: no TF op at import)


def augment(rgb, y_true, seed, config: Augment):
    """Augment one example with the stateless seed `seed` (int64 [2]): flips apply to image and target
    together, colour changes to the image only. rgb [h, w, 3] in [0, 1], y_true [h', w', 2]."""
    s_flip, s_swap, s_order, s_bright, s_contrast, s_gamma = tf.unstack(tf.random.split(seed, 6))
    # tf.cond, not tf.where: the flipped and permuted copies are only made when they are used.
    flip = tf.random.stateless_uniform([], s_flip) < config.flip
    rgb, y_true = tf.cond(flip, lambda: (tf.image.flip_left_right(rgb), tf.image.flip_left_right(y_true)),
                          lambda: (rgb, y_true))

    swap = tf.random.stateless_uniform([], s_swap) < config.channel_swap
    order = tf.gather(tf.constant(_CHANNEL_ORDERS, tf.int32), tf.random.stateless_uniform([], s_order, 0, 6, dtype=tf.int32))
    rgb = tf.cond(swap, lambda: tf.gather(rgb, order, axis=-1), lambda: rgb)

    if config.brightness > 0:
        rgb = tf.image.stateless_random_brightness(rgb, config.brightness, s_bright)
    if config.contrast > 0:
        rgb = tf.image.stateless_random_contrast(rgb, 1 - config.contrast, 1 + config.contrast, s_contrast)
    rgb = tf.clip_by_value(rgb, 0.0, 1.0)
    if config.gamma > 0:
        # x ** g as exp(g log x): 5x faster than TF's pow on CPU; log(0) = -inf gives exp(-inf) = 0 = 0 ** g.
        gamma = tf.random.stateless_uniform([], s_gamma, 1 - config.gamma, 1 + config.gamma)
        rgb = tf.exp(gamma * tf.math.log(rgb))
    return rgb, y_true


def make_dataset(
    split: Split,
    *,
    batch_size: int,
    target_hw,
    input_hw=nyu.INPUT_HW,
    depth_scale: DepthScale = DepthScale(),
    training: bool = False,
    augmentation: Augment | None = Augment(),
    seed: int = 0,
    strict: bool = False,
    select=None,
) -> tf.data.Dataset:
    """The input pipeline: read -> decode -> resize -> augment (training only) -> batch -> prefetch.

    Yields (rgb float32 [B, *input_hw, 3] in [0, 1], y_true float32 [B, *target_hw, 2]) where y_true packs
    the encoded depth and its validity mask (see pack_target). training shuffles every epoch (seeded),
    augments and drops the last partial batch; the same seed gives the same batches. select: a function of the
    frame-index dataset giving the frames to read (a worker's shard), see `blobs`.
    """
    examples = frames(split, strict=strict, shuffle_seed=seed if training else None, rgb_min_hw=input_hw,
                      select=select).map(
        lambda frame: to_example(frame, input_hw, target_hw, depth_scale), num_parallel_calls=tf.data.AUTOTUNE
    )
    if training and augmentation is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        examples = tf.data.Dataset.zip(examples, seeds).map(
            lambda example, s: augment(*example, s, augmentation), num_parallel_calls=tf.data.AUTOTUNE
        )
    return examples.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------
# python data.py inspect
# ---------------------------------------------------------------------------

def split_stats(split: Split, limit: int | None = None) -> dict:
    """Frame count, RGB shape(s), and depth min / max / mean (metres, valid pixels) and invalid fraction."""
    count = len(split) if limit is None else min(limit, len(split))
    shapes, lo, hi, total, valid, pixels, seen = {}, np.inf, -np.inf, 0.0, 0, 0, 0
    stream = frames(split).take(count).prefetch(tf.data.AUTOTUNE)
    for frame in tqdm(stream, total=count, desc=f"{split.name}", unit="frame", file=sys.stderr):
        seen += 1
        shape = "x".join(str(v) for v in frame["rgb"].shape)
        shapes[shape] = shapes.get(shape, 0) + 1
        depth = frame["depth"].numpy()
        good = depth[depth > 0]
        pixels, valid = pixels + depth.size, valid + good.size
        if good.size:
            lo, hi, total = min(lo, float(good.min())), max(hi, float(good.max())), total + float(good.sum(dtype=np.float64))
    return {
        "layout": split.layout,
        "frames": len(split),
        "frames_read": seen,
        "skipped": len(split.skipped),
        "rgb_shape": max(shapes, key=shapes.get) if shapes else None,
        "rgb_shapes": shapes,
        "depth_min_m": round(lo, 4) if valid else None,
        "depth_max_m": round(hi, 4) if valid else None,
        "depth_mean_m": round(total / valid, 4) if valid else None,
        "invalid_fraction": round(1 - valid / pixels, 5) if pixels else None,
        "crop": list(split.crop) if split.crop else None,
    }


def inspect(path, limit: int | None = None) -> dict:
    """{split name: split_stats} for every split of the dataset at `path`."""
    source = open_source(path)
    return {name: split_stats(split, limit) for name, split in source.splits.items()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Inspect a dataset. (The synthetic dataset is written by python -m synth.)")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = commands.add_parser("inspect", help="print frame counts and depth statistics of a dataset as JSON")
    inspect_cmd.add_argument("path", help=f"dataset path: {EXPECTED_LAYOUTS}")
    inspect_cmd.add_argument("--limit", type=int, default=None, help="read only the first N frames of each split")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be zero or more, got {args.limit}")
    return args


def main(args) -> int:
    """Run the command line; returns the exit code (2, with one sentence, for a path in no known layout)."""
    try:
        print(json.dumps(inspect(args.path, args.limit), indent=2))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s: %(message)s")
    sys.exit(main(parse_args()))
