"""The input pipeline: frames -> examples -> augment -> batch, on tf.data (and `python data.py inspect`).

A split's frames (layouts.py finds them in any supported layout) are read a few at a time as encoded
blobs, decoded in the graph to RGB uint8 and depth in metres (decode.frames, nyu.DEPTH_CODECS), cut to the
network input's aspect and resized to its input and output sizes, encoded by a `depth.DepthScale`,
augmented for training (augment.py) and batched. A training pass's frame order and augmentation are functions
of the seed and the pass, so a resumed run starts where it stopped without reading what came before.

    python data.py inspect data/synth        # frame counts and depth statistics of any dataset, as JSON
    python data.py inspect tum/ --depth-units-per-metre 5000   # 16-bit depth in another unit (TUM RGB-D's)
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import json
import logging
import sys

import numpy as np
import tensorflow as tf
from tensorflow.autograph.experimental import do_not_convert

import nyu
from cli import user_error
from augment import Augment, apply_colour, colour_draws, flip
from decode import LOG, frame_indices, frames, streamed_frames
from depth import DepthScale, pack_target
from inference import resize_rgb  # the network input, as predict.py and export.py make it
from layouts import EXPECTED_LAYOUTS, DataError, Split, add_depth_units_argument, open_source, positive_float
from quiet import progress_bar
from splits import SkipLog

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


def aspect_crop(rgb, depth_m, aspect_hw, at=(0.5, 0.5)):
    """(rgb, depth) of one frame, rgb [h, w, 3] and depth [H, W, 1], cut to the largest box of aspect_hw's shape
    (h:w) at `at`: where the box sits in the room left over, as fractions (top, left) in [0, 1]; 0.5 = central.

    The box is placed in fractions of the frame, so an RGB decoded at a reduced JPEG scale is cut where its
    full-size depth is (to within half an RGB pixel). A frame of that aspect comes back whole: its sides'
    ratio is compared as a ratio of integer products, exactly 1.
    """
    full_hw = tf.cast(tf.shape(depth_m)[:2], tf.float64)
    wide = full_hw[1] * aspect_hw[0] / (full_hw[0] * aspect_hw[1])  # > 1: wider than the input
    size = tf.stack([tf.minimum(wide, 1.0), tf.minimum(1.0 / wide, 1.0)])  # the box's (h, w) / the frame's
    start = (1.0 - size) * tf.cast(at, tf.float64)

    def cut(image):
        hw = tf.shape(image)[:2]
        box = tf.maximum(tf.cast(tf.round(size * tf.cast(hw, tf.float64)), tf.int32), 1)
        top_left = tf.minimum(tf.cast(tf.round(start * tf.cast(hw, tf.float64)), tf.int32), hw - box)
        return tf.image.crop_to_bounding_box(image, top_left[0], top_left[1], box[0], box[1])

    return cut(rgb), cut(depth_m)


_CROP_FOLD = 1  # folded into a frame's augmentation seed to draw its crop position, apart from augment's draws


def to_example(frame, input_hw, target_hw, depth_scale: DepthScale, seed=None):
    """A decoded frame -> (rgb float32 [*input_hw, 3] in [0, 1], y_true [*target_hw, 2] = pack_target).

    The frame is cut to the input's aspect before resizing, so it is never stretched (aspect_crop): centrally,
    or with a stateless seed (int64 [2], a training frame's) at a random place drawn from it."""
    at = (0.5, 0.5) if seed is None else tf.random.stateless_uniform(
        [2], tf.random.experimental.stateless_fold_in(seed, _CROP_FOLD), dtype=tf.float64)
    rgb, depth_m = aspect_crop(frame["rgb"], frame["depth"], input_hw, at)
    depth, mask = resize_depth(depth_m, target_hw)
    target = tf.where(mask > 0, depth_scale.encode(depth), 0.0)
    return resize_rgb(rgb, input_hw), pack_target(target, mask)


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
    start_batch: int = 0,
    uint8_rgb: bool = False,
    skipped: SkipLog | None = None,
) -> tf.data.Dataset:
    """The input pipeline: frame indices -> read -> decode -> crop to the input's aspect -> resize -> augment
    (training only) -> batch -> prefetch, one pass over the split per iteration (repeat() for more).

    Yields (rgb float32 [B, *input_hw, 3] in [0, 1], y_true float32 [B, *target_hw, 2]) where y_true packs
    the encoded depth and its validity mask (see pack_target). training shuffles every pass (seeded), places
    each frame's crop at random and augments (a central crop without augmentation), and drops the last partial
    batch; the same seed gives the same batches. select: a function of the frame indices (int64 [n]) giving the
    frames to read (a worker's shard, loop.shard_select).

    start_batch (training): the batches of this pipeline already trained (a resumed run's position): iteration
    starts at that pass and place in it (training_indices), before any file is read. uint8_rgb (training): rgb
    stays uint8 [B, *input_hw, 3] and, with a colour augmentation, a third element float32 [B, 6] holds each
    frame's augment.colour_draws, which the train step applies on the device (augment.apply_colour).
    skipped: where the frames left out are recorded (decode.frames; None: named in a warning alone).
    """
    if training and split.stream is not None:  # a TFDS stream has no frame indices: its skip reads what it skips
        keys = pass_keys(seed).flat_map(do_not_convert(lambda key: tf.data.Dataset.from_tensors(key).repeat()))
        seeded = tf.data.Dataset.zip(streamed_frames(split, shuffle_seed=seed).enumerate(), keys).map(
            do_not_convert(lambda numbered, key: {**numbered[1], "seed": frame_seed(key, numbered[0])}))
        examples = _examples(seeded, batch_size, input_hw, target_hw, depth_scale, augmentation, uint8_rgb)
        return examples.repeat().skip(start_batch) if start_batch else examples
    if not training:
        read = frames(split, None if select is None else frame_indices(split, select), strict=strict,
                      rgb_min_hw=input_hw, skipped=skipped)
        examples = read.map(do_not_convert(lambda frame: to_example(frame, input_hw, target_hw, depth_scale)),
                            num_parallel_calls=tf.data.AUTOTUNE)
        return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    read = frames(split, training_indices(split, seed, batch_size, start_batch, select), strict=strict,
                  rgb_min_hw=input_hw, skipped=skipped)
    return _examples(read, batch_size, input_hw, target_hw, depth_scale, augmentation, uint8_rgb)


def _examples(read, batch_size, input_hw, target_hw, depth_scale, augmentation, uint8_rgb):
    """Training frames (with their "seed") -> batches: the crop's place and the augmentation drawn from the seed;
    the colour change applied here per frame, or handed to the train step (uint8_rgb)."""
    colour = augmentation is not None and augmentation.colour

    @do_not_convert  # (decode.py says why)
    def example(frame):
        seed = frame["seed"] if augmentation is not None else None
        rgb, y_true = to_example(frame, input_hw, target_hw, depth_scale, seed)
        if uint8_rgb:  # resize_rgb's [0, 1] back to grey levels: a quarter of the bytes to flip, batch and hand over
            rgb = tf.cast(tf.round(rgb * 255.0), tf.uint8)
        if augmentation is not None:
            rgb, y_true = flip(rgb, y_true, seed, augmentation)
        if not colour:
            return rgb, y_true
        draws = colour_draws(seed, augmentation)
        return (rgb, y_true, draws) if uint8_rgb else (apply_colour(rgb, draws), y_true)

    examples = read.map(example, num_parallel_calls=tf.data.AUTOTUNE)
    return examples.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def training_indices(split: Split, seed: int, batch_size: int, start_batch: int = 0, select=None) -> tf.data.Dataset:
    """One training pass's frame indices per iteration, with each frame's augmentation seed: dicts of index
    (int64) and seed (int64 [2], frame_seed). Pass p is pass_order(seed, p) (then select: a worker's shard); the
    first iteration is the pass and place of batch `start_batch` of this pipeline (passes of
    len(selected) // batch_size whole batches), each later iteration the next pass: so a resumed run computes its
    data position instead of producing and dropping every batch before it."""
    per_pass = len(split) if select is None else int(tf.size(select(tf.range(len(split), dtype=tf.int64))))
    first, place = divmod(start_batch, per_pass // batch_size) if per_pass >= batch_size else (0, 0)

    @do_not_convert
    def one_pass(p):
        order = pass_order(seed, p, len(split))
        order = order if select is None else select(order)
        order = order[tf.where(p == first, place * batch_size, 0):]
        key = pass_key(seed, p)
        seeded = do_not_convert(lambda i: {"index": i, "seed": frame_seed(key, i)})
        return tf.data.Dataset.from_tensor_slices(order).map(seeded)

    return pass_numbers(first).flat_map(one_pass)


def pass_numbers(first: int = 0) -> tf.data.Dataset:
    """One element per iteration: the pass number (int64), `first` at the first iteration, then one more at each
    (a counter kept across the iterations of a repeated pipeline, as tf.data's own reshuffle_each_iteration is)."""
    counter = tf.Variable(np.int64(first), trainable=False)
    return tf.data.Dataset.range(1).map(do_not_convert(lambda _: counter.assign_add(1) - 1))


def pass_keys(seed: int) -> tf.data.Dataset:
    """One element per iteration: the pass_key of that iteration's pass, from pass 0."""
    return pass_numbers().map(do_not_convert(lambda p: pass_key(seed, p)))


_ORDER_FOLD = -1  # folded into a pass's key to draw the pass's order, apart from its frames' seeds (index >= 0)


def pass_key(seed: int, pass_index):
    """int64 [2]: the stateless key of pass `pass_index` (0-based) of a run seeded `seed`, the same in every
    process, so every worker's (and every resumed run's) pass p has pass p's key."""
    return tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), tf.cast(pass_index, tf.int64))


def pass_order(seed: int, pass_index, count: int):
    """int64 [count]: the frame indices in the order pass `pass_index` reads them (a stateless shuffle by its key)."""
    key = tf.random.experimental.stateless_fold_in(pass_key(seed, pass_index), _ORDER_FOLD)
    return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)


def frame_seed(pass_key, index):
    """The stateless augmentation seed (int64 [2]) of frame `index` in the pass of `pass_key`: a function of the
    frame, not of its position in a worker's shard, so one device and any number of workers augment a frame
    alike (multi-worker training then equals one-device training with augmentation on)."""
    return tf.random.experimental.stateless_fold_in(pass_key, index)


# ---------------------------------------------------------------------------
# python data.py inspect
# ---------------------------------------------------------------------------

def unit_advice(split: Split, in_range: dict[float, int], valid: int, depth_range_m) -> tuple[float | None, str | None]:
    """(a better unit or None, a warning or None) when at most half of the split's `valid` depths lie in
    depth_range_m at its unit; in_range is in_range_by_unit summed over the frames."""
    unit = split.depth_codec.units_per_metre
    if not valid or in_range[unit] > valid / 2:
        return None, None
    best = max(in_range, key=in_range.get)
    where = (f"{split.source} [{split.name}]: only {in_range[unit] / valid:.0%} of valid depth lies in "
             f"{depth_range_m[0]:g}-{depth_range_m[1]:g} m as read ({split.depth_codec.description})")
    if best == unit or in_range[best] <= valid / 2:
        return None, f"{where}; check the depth files or --min-depth-m / --max-depth-m"
    return best, (f"{where}; at {best:g} per metre ({nyu.DEPTH_UNITS[best]}) {in_range[best] / valid:.0%} would: "
                  f"try --depth-units-per-metre {best:g}")


def split_stats(split: Split, limit: int | None = None, depth_range_m=(nyu.MIN_DEPTH_M, nyu.MAX_DEPTH_M)) -> dict:
    """Frame count, RGB shape(s), depth min / max / mean (metres, valid pixels), invalid fraction, the fraction
    of valid depth inside depth_range_m = (min, max) metres and, when that is at most half, a warning and
    the unit of nyu.DEPTH_UNITS that would fit (unit_advice)."""
    total_frames = len(split)
    if limit is not None and limit < len(split):
        split = split.subset(range(limit))  # not take(limit): frames read ahead past it would count as skipped
    count = len(split)
    shapes, lo, hi, total, valid, pixels, seen = {}, np.inf, -np.inf, 0.0, 0, 0, 0
    in_range = dict.fromkeys(nyu.in_range_by_unit(np.zeros(0), split.depth_codec, depth_range_m), 0)
    skipped = SkipLog()
    stream = frames(split, skipped=skipped).prefetch(tf.data.AUTOTUNE)
    for frame in progress_bar(stream, total=count, desc=f"{split.name}", unit="frame"):
        seen += 1
        shape = "x".join(str(v) for v in frame["rgb"].shape)
        shapes[shape] = shapes.get(shape, 0) + 1
        depth = frame["depth"].numpy()
        good = depth[depth > 0]
        pixels, valid = pixels + depth.size, valid + good.size
        if good.size:
            lo, hi, total = min(lo, float(good.min())), max(hi, float(good.max())), total + float(good.sum(dtype=np.float64))
            for unit, n in nyu.in_range_by_unit(good, split.depth_codec, depth_range_m).items():
                in_range[unit] += n
    better_unit, warning = unit_advice(split, in_range, valid, depth_range_m)
    if warning:
        LOG.warning("%s", warning)
    return {
        "layout": split.layout,
        "frames": total_frames,
        "frames_read": seen,
        "skipped": skipped.count,
        "rgb_shape": max(shapes, key=shapes.get) if shapes else None,
        "rgb_shapes": shapes,
        "depth_units_per_metre": split.depth_codec.units_per_metre,
        "depth_min_m": round(lo, 4) if valid else None,
        "depth_max_m": round(hi, 4) if valid else None,
        "depth_mean_m": round(total / valid, 4) if valid else None,
        "invalid_fraction": round(1 - valid / pixels, 5) if pixels else None,
        "in_range_fraction": round(in_range[split.depth_codec.units_per_metre] / valid, 5) if valid else None,
        "suggested_depth_units_per_metre": better_unit,
        "crop": list(split.crop) if split.crop else None,
    }


def inspect(path, limit: int | None = None, depth_units_per_metre: float | None = None,
            depth_range_m=(nyu.MIN_DEPTH_M, nyu.MAX_DEPTH_M), tfds_data_dir=None) -> dict:
    """{split name: split_stats} for every split of the dataset at `path`, 16-bit depth read at
    depth_units_per_metre (None: the layout's own); tfds_data_dir: see open_source."""
    source = open_source(path, depth_units_per_metre, tfds_data_dir)
    return {name: split_stats(split, limit, depth_range_m) for name, split in source.splits.items()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Inspect a dataset. (The synthetic dataset is written by python -m synth.)")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = commands.add_parser("inspect", help="print frame counts and depth statistics of a dataset as JSON")
    inspect_cmd.add_argument("path", help=f"dataset path: {EXPECTED_LAYOUTS}")
    inspect_cmd.add_argument("--limit", type=int, default=None, help="read only the first N frames of each split")
    inspect_cmd.add_argument("--tfds-data-dir", default=None,
                             help="where a tfds: dataset is prepared (default: TensorFlow Datasets' own)")
    add_depth_units_argument(inspect_cmd)
    inspect_cmd.add_argument("--min-depth-m", type=positive_float, default=nyu.MIN_DEPTH_M,
                             help=f"warn when most valid depth is nearer (default {nyu.MIN_DEPTH_M:g})")
    inspect_cmd.add_argument("--max-depth-m", type=positive_float, default=nyu.MAX_DEPTH_M,
                             help=f"... or farther than this, in metres (default {nyu.MAX_DEPTH_M:g})")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 0:
        parser.error(f"--limit must be zero or more, got {args.limit}")
    if args.min_depth_m >= args.max_depth_m:
        parser.error(f"need --min-depth-m < --max-depth-m, got {args.min_depth_m:g} and {args.max_depth_m:g}")
    return args


def main(args) -> int:
    """Run the command line; returns the exit code (2, with one sentence, for a path in no known layout)."""
    try:
        stats = inspect(args.path, args.limit, args.depth_units_per_metre, (args.min_depth_m, args.max_depth_m),
                        args.tfds_data_dir)
        print(json.dumps(stats, indent=2))
    except DataError as err:
        return user_error(f"{err}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s: %(message)s")
    sys.exit(main(parse_args()))
