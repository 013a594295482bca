"""The input pipeline: frames -> examples -> augment -> batch, on tf.data (and `python data.py inspect`).

A split's frames (layouts.py finds them in any supported layout) are read a few at a time as encoded
blobs, decoded in the graph to RGB uint8 and depth in metres (decode.py, nyu.DEPTH_CODECS), cut to the
network input's aspect and resized to its input and output sizes, encoded by a `depth.DepthScale`,
augmented for training and batched.

    python data.py inspect data/synth        # frame counts and depth statistics of any dataset, as JSON
    python data.py inspect tum/ --depth-units-per-metre 5000   # 16-bit depth in another unit (TUM RGB-D's)
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

import nyu
from cli import user_error
from decode import decode_depth, decode_rgb, finite_positive
from depth import DepthScale, pack_target
from inference import resize_rgb  # the network input, as predict.py and export.py make it
from layouts import (EXPECTED_LAYOUTS, DataError, FrameError, Split, add_depth_units_argument, open_source,
                     positive_float)
from quiet import progress_bar
from readers import decode_problem

LOG = logging.getLogger("depth.data")

# ---------------------------------------------------------------------------
# Reading and decoding frames
# ---------------------------------------------------------------------------

# Frames read per Python call: every tf.numpy_function call costs about 1 ms of GIL hand-offs whatever it does
# (reading a frame's bytes takes 0.04 ms), which capped the whole pipeline at ~850 frames/s on 2 cores when it
# read one frame per call; 8 per call lifts the reading stage to ~3500 frames/s (python -m benchmarks profiles it).
READ_CHUNK = 8


def skip_frame(split: Split, index: int, problem: str, strict: bool) -> None:
    """Log frame `index` as skipped and list it in split.skipped; with strict=True raise DataError naming it."""
    if strict:
        raise DataError(f"{split.describe(index)}: {problem} (drop --strict to skip such frames with a warning)")
    LOG.warning("skipping %s", split.skip(index, problem))


def read_frames(split: Split, strict: bool, handed: set | None = None):
    """indices int64 [n] -> (ok bool [n], rgb blobs string [n], depth blobs string [n], raw (h, w) int32 [n, 2],
    EXIF orientation int32 [n]), the Python side of `blobs` (a tf.numpy_function). Bad frames are skip_frame'd
    and come back with ok False; the good ones' indices are added to `handed` when given. strict=True also
    decodes every frame in full with PIL (readers.decode_problem), so a file corrupt inside stops it at once.
    """

    def read_one(index: int):
        try:
            rgb, depth, hw, orientation = split.read(index)
            if strict and (problem := decode_problem(split.rgb_format, split.depth_codec, rgb, depth, hw)):
                raise FrameError(problem)
            if handed is not None:
                handed.add(index)
            return True, rgb, depth, np.asarray(hw, np.int32), orientation
        except FrameError as err:
            skip_frame(split, index, str(err), strict)
        return False, b"", b"", np.zeros(2, np.int32), 1

    def read(indices):
        ok, rgb, depth, hw, orientation = zip(*(read_one(int(index)) for index in indices))
        return (np.array(ok), np.array(rgb, object), np.array(depth, object), np.stack(hw),
                np.array(orientation, np.int32))

    return read


def blobs(split: Split, *, strict: bool = False, shuffle_seed: int | None = None,
          chunk: int = READ_CHUNK, handed: set | None = None, select=None) -> tf.data.Dataset:
    """The reading stage of `frames`: dicts of the frame's undecoded rgb and depth blobs (string), raw hw
    (int32 [2]), EXIF orientation (int32) and index (int64), bad frames already left out. Python reads `chunk`
    frames per call. A split that streams decoded frames (Split.stream, TFDS's) has no blob stage: its frames
    come as `frames`. select: None, or a function of the (shuffled) frame-index dataset returning the indices
    to read (a worker's shard: see loop.shard_select), applied before any file is read."""
    if split.stream is not None:
        return frames(split, shuffle_seed=shuffle_seed)
    read = read_frames(split, strict, handed)
    indices = tf.data.Dataset.range(len(split))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    if select is not None:
        indices = select(indices)

    def load(chunk_indices):
        ok, rgb, depth, hw, orientation = tf.numpy_function(
            read, [chunk_indices], [tf.bool, tf.string, tf.string, tf.int32, tf.int32])
        return {"ok": tf.reshape(ok, [-1]), "rgb": tf.reshape(rgb, [-1]), "depth": tf.reshape(depth, [-1]),
                "hw": tf.reshape(hw, [-1, 2]), "orientation": tf.reshape(orientation, [-1]), "index": chunk_indices}

    loaded = indices.batch(chunk).map(load, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return loaded.filter(lambda frame: frame["ok"])


def frames(split: Split, *, strict: bool = False, shuffle_seed: int | None = None,
           rgb_min_hw=None, select=None) -> tf.data.Dataset:
    """Full-resolution frames of `split`: dicts of rgb uint8 [H, W, 3], depth float32 [H, W, 1] metres
    (0 = invalid) and index (int64, the frame's position in split.keys).

    Frames are read a few at a time (never the whole dataset); RGB is turned upright by its EXIF orientation.
    Unreadable and undecodable frames are skipped with a warning naming them (listed in split.skipped), or
    with strict=True raise DataError naming them. shuffle_seed reshuffles the order every epoch. With
    rgb_min_hw (h, w), JPEG images come decoded at the smallest of 1, 1/2, 1/4, 1/8 scale still covering it.
    select: see `blobs` (a streamed split has no frame indices to select from: DataError).
    """
    if split.stream is not None:  # decoded already (TFDS): only the depth's invalid values are set to 0 here
        if select is not None:
            raise DataError(f"{split.source} [{split.name}] is read as one TFDS stream, which cannot be split "
                            "between workers; train on several machines from the extracted nyudepthv2/ folder")
        decoded = split.stream(split.keys, shuffle_seed)
        return decoded.map(lambda frame: {**frame, "depth": finite_positive(frame["depth"])})
    codec = split.depth_codec
    handed = set()  # frames the reading stage handed over in this pass
    arrived = tf.Variable(tf.zeros([max(1, len(split))], tf.bool), trainable=False)  # ... and those decoded

    def decode(frame):
        rgb = decode_rgb(frame["rgb"], frame["hw"], split.rgb_format, rgb_min_hw, frame["orientation"])
        depth = decode_depth(frame["depth"], frame["hw"], codec)
        with tf.control_dependencies([rgb, depth]):  # marked only once both decoded
            arrival = arrived.scatter_nd_update([[frame["index"]]], [True])
        with tf.control_dependencies([arrival]):
            return {"rgb": rgb, "depth": depth, "index": tf.identity(frame["index"])}

    def name_undecodable(decoded):
        for index in sorted(i for i in handed if not decoded[i]):
            problem = decode_problem(split.rgb_format, codec, *split.read(index)[:3])
            skip_frame(split, index, problem or "TensorFlow cannot decode it (PIL can)", strict)
        handed.clear()
        return np.int64(-1)

    def end_of_pass(_):
        # Runs once every frame of the pass has come out of decode (ignore_errors drops the ones that failed,
        # unnamed): those handed over but not marked arrived are named, then the marks are reset.
        report = tf.numpy_function(name_undecodable, [arrived.read_value()], tf.int64, stateful=True)
        with tf.control_dependencies([report]):
            reset = arrived.assign(tf.zeros_like(arrived))
        with tf.control_dependencies([reset]):
            index = tf.identity(tf.reshape(report, []))
        return {"rgb": tf.zeros([0, 0, 3], tf.uint8), "depth": tf.zeros([0, 0, 1]), "index": index}

    read = blobs(split, strict=strict, shuffle_seed=shuffle_seed, handed=handed, select=select)
    decoded = read.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    # Not with strict: ignore_errors would also swallow the reading stage's errors naming a bad frame.
    decoded = decoded if strict else decoded.ignore_errors()
    return decoded.concatenate(tf.data.Dataset.range(1).map(end_of_pass).filter(lambda _: False))


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
    """The input pipeline: read -> decode -> crop to the input's aspect -> resize -> augment (training only) ->
    batch -> prefetch.

    Yields (rgb float32 [B, *input_hw, 3] in [0, 1], y_true float32 [B, *target_hw, 2]) where y_true packs
    the encoded depth and its validity mask (see pack_target). training shuffles every epoch (seeded), places
    each frame's crop at random and augments (a central crop without augmentation), and drops the last partial
    batch; the same seed gives the same batches. select: a function of the
    frame-index dataset giving the frames to read (a worker's shard), see `blobs`.
    """
    read = frames(split, strict=strict, shuffle_seed=seed if training else None, rgb_min_hw=input_hw, select=select)
    if training and augmentation is not None:
        def example(frame, key):  # the crop's place and the augmentation, both drawn from the frame's seed
            per_frame = frame_seed(key, frame["index"])
            return augment(*to_example(frame, input_hw, target_hw, depth_scale, per_frame), per_frame, augmentation)

        examples = tf.data.Dataset.zip(read, pass_keys(seed)).map(example, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        examples = read.map(lambda frame: to_example(frame, input_hw, target_hw, depth_scale),
                            num_parallel_calls=tf.data.AUTOTUNE)
    return examples.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


def pass_keys(seed: int) -> tf.data.Dataset:
    """int64 [2] for every element of one pass over the data, the same within a pass and new for each pass (each
    iteration of the pipeline, i.e. each epoch of a repeated one); the same sequence for the same seed in every
    process, so every worker's pass e has pass e's key."""
    key = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2).take(1)
    return key.flat_map(lambda k: tf.data.Dataset.from_tensors(k).repeat())  # repeating `key` would redraw it


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
    stream = frames(split).prefetch(tf.data.AUTOTUNE)
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
        "skipped": len(split.skipped),
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
