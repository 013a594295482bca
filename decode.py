"""A split's frames, the input pipeline's first two stages (data.py builds examples from them): frame indices ->
their blobs, read by Python a few at a time (`blobs`) -> decoded in the graph (`frames`): RGB uint8 turned upright
by its EXIF orientation, JPEGs at the smallest scale still covering the network input, and depth in metres by
its codec (nyu.DEPTH_CODECS), 0 where invalid. Unreadable and undecodable frames are skipped, named in a warning
and recorded in the SkipLog the caller passes (splits.SkipLog); `DecodeAudit` finds the undecodable ones.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf
from tensorflow.autograph.experimental import do_not_convert

import nyu
from layouts import DataError, FrameError, Split
from splits import SkipLog
from filecheck import EXIF_TURNS, SWAPPED_ORIENTATIONS, decode_problem

LOG = logging.getLogger("depth.data")  # the input pipeline's log: a skipped frame's warning

# Frames read per Python call: every tf.numpy_function call costs about 1 ms of GIL hand-offs whatever it does
# (reading a frame's bytes takes 0.04 ms), which capped the whole pipeline at ~850 frames/s on 2 cores when it
# read one frame per call; 8 per call lifts the reading stage to ~3500 frames/s (python -m benchmarks profiles it).
READ_CHUNK = 8

# Every function the pipeline hands tf.data (here, in data.py, mixtures.py and readers.py) is straight-line
# TensorFlow code, so it is traced with AutoGraph off (do_not_convert): AutoGraph rewrote the source of each and of
# everything it calls at every pipeline's construction, about 1 s of CPU per run (loop.py's steps: another 1 s).


def skip_frame(split: Split, index: int, problem: str, *, strict: bool, skipped: SkipLog | None) -> None:
    """Log frame `index` as skipped and record it in `skipped` (None: the warning alone); with strict=True raise
    DataError naming it."""
    where = split.describe(index)
    if strict:
        raise DataError(f"{where}: {problem} (drop --strict to skip such frames with a warning)")
    if skipped is not None:
        skipped.record(where, problem)
    LOG.warning("skipping %s: %s", where, problem)


def read_frames(split: Split, strict: bool, handed: set | None = None, skipped: SkipLog | None = None):
    """indices int64 [n] -> (ok bool [n], rgb blobs string [n], depth blobs string [n], raw (h, w) int32 [n, 2],
    EXIF orientation int32 [n]), the Python side of `blobs` (a tf.numpy_function). Bad frames are skip_frame'd
    (recorded in `skipped`) and come back with ok False; the good ones' indices are added to `handed` when given.
    strict=True also decodes every frame in full with PIL (filecheck.decode_problem), so a file corrupt inside stops
    it at once.
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
            skip_frame(split, index, str(err), strict=strict, skipped=skipped)
        return False, b"", b"", np.zeros(2, np.int32), 1

    def read(indices):
        ok, rgb, depth, hw, orientation = zip(*(read_one(int(index)) for index in indices))
        return (np.array(ok), np.array(rgb, object), np.array(depth, object), np.stack(hw),
                np.array(orientation, np.int32))

    return read


def frame_indices(split: Split, select=None) -> tf.data.Dataset:
    """One pass over `split` in order: dicts of index (int64), or of the indices select(int64 [n]) gives (a worker's
    shard: see loop.shard_select). The reading stage's input (`blobs`); training passes are `training_indices`."""
    indices = tf.range(len(split), dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices({"index": indices if select is None else select(indices)})


def blobs(split: Split, indices: tf.data.Dataset | None = None, *, strict: bool = False, chunk: int = READ_CHUNK,
          handed: set | None = None, skipped: SkipLog | None = None) -> tf.data.Dataset:
    """The reading stage of `frames`: dicts of the frame's undecoded rgb and depth blobs (string), raw hw
    (int32 [2]), EXIF orientation (int32), index (int64) and whatever else `indices` carries (a training frame's
    seed), bad frames already left out (recorded in `skipped`). indices: dicts with the frame index to read
    (default: every frame in order, frame_indices), fixed before any file is read. Python reads `chunk` frames per
    call. A split that streams decoded frames (Split.stream, TFDS's) has no blob stage: its frames come as
    `streamed_frames`."""
    if split.stream is not None:
        return streamed_frames(split, indices)
    read = read_frames(split, strict, handed, skipped)
    indices = frame_indices(split) if indices is None else indices

    @do_not_convert
    def load(chunk_indices):
        ok, rgb, depth, hw, orientation = tf.numpy_function(
            read, [chunk_indices["index"]], [tf.bool, tf.string, tf.string, tf.int32, tf.int32])
        return {**chunk_indices, "ok": tf.reshape(ok, [-1]), "rgb": tf.reshape(rgb, [-1]),
                "depth": tf.reshape(depth, [-1]), "hw": tf.reshape(hw, [-1, 2]), "orientation": tf.reshape(orientation, [-1])}

    loaded = indices.batch(chunk).map(load, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return loaded.filter(do_not_convert(lambda frame: frame["ok"]))


def frames(split: Split, indices: tf.data.Dataset | None = None, *, strict: bool = False,
           rgb_min_hw=None, skipped: SkipLog | None = None) -> tf.data.Dataset:
    """Full-resolution frames of `split`: dicts of rgb uint8 [H, W, 3], depth float32 [H, W, 1] metres
    (0 = invalid), index (int64, the frame's position in split.keys) and any other field `indices` carries.

    indices: one pass's frame indices (see `blobs`; default every frame in order). Frames are read a few at a time
    (never the whole dataset); RGB is turned upright by its EXIF orientation. Unreadable and undecodable frames
    are skipped with a warning naming them (recorded in `skipped`, a frame once however many passes read it; None:
    the warning alone), or with strict=True raise DataError naming them. With rgb_min_hw (h, w), JPEG images come
    decoded at the smallest of 1, 1/2, 1/4, 1/8 scale still covering it. A split streamed decoded (TFDS's) is read
    whole, in its own order: see `streamed_frames`.
    """
    if split.stream is not None:
        return streamed_frames(split, indices)
    codec = split.depth_codec
    audit = DecodeAudit(split, strict=strict, skipped=skipped)
    read = blobs(split, indices, strict=strict, handed=audit.handed, skipped=skipped)
    carried = [k for k in read.element_spec if k not in ("ok", "rgb", "depth", "hw", "orientation")]

    @do_not_convert
    def decode(frame):
        rgb = decode_rgb(frame["rgb"], frame["hw"], split.rgb_format, rgb_min_hw, frame["orientation"])
        depth = decode_depth(frame["depth"], frame["hw"], codec)
        others = audit.arrive(frame["index"], [rgb, depth], {k: frame[k] for k in carried})
        return {"rgb": rgb, "depth": depth, **others}

    decoded = read.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    # Not with strict: ignore_errors would also swallow the reading stage's errors naming a bad frame.
    return audit.after(decoded if strict else decoded.ignore_errors())


class DecodeAudit:
    """Names the frames of each pass that the graph failed to decode, which tf.data would otherwise lose unnamed.

    The reading stage checks each frame's files (filecheck.check_frame), but a file can pass those checks and still
    fail TensorFlow's decoders (corrupt inside); ignore_errors() then drops the frame without saying which, so it
    would vanish from every epoch unnoticed. The audit keeps, per pass: the frames the reading stage handed over
    (`handed`, filled by read_frames from tf.data's threads), a flag per frame set in the graph once both its RGB
    and depth decoded (`arrive`, a tf.Variable), and one element appended to the pass (`after`), run once every
    frame has left decode: each frame handed over but never flagged is read again and decoded by PIL
    (filecheck.decode_problem) to say why, and skipped by name (skip_frame: a warning recorded in `skipped`, or
    DataError with strict); then both are reset for the next pass (a repeated pipeline's next epoch).
    """

    def __init__(self, split: Split, *, strict: bool, skipped: SkipLog | None):
        self.split, self.strict, self.skipped = split, strict, skipped
        self.handed = set()
        self.arrived = tf.Variable(tf.zeros([max(1, len(split))], tf.bool), trainable=False)

    def arrive(self, index, decoded: list, carried: dict) -> dict:
        """`carried` (a frame's other fields) passed on once frame `index` is flagged arrived, which waits for every
        tensor in `decoded` (its RGB and depth): a frame whose decode fails is never flagged."""
        with tf.control_dependencies(decoded):
            arrival = self.arrived.scatter_nd_update([[index]], [True])
        with tf.control_dependencies([arrival]):
            return {k: tf.identity(v) for k, v in carried.items()}

    def name_lost(self, arrived: np.ndarray) -> np.int64:
        """Python, once a pass: skip_frame every frame handed over but not flagged in `arrived` (bool [n])."""
        split = self.split
        for index in sorted(i for i in self.handed if not arrived[i]):
            problem = decode_problem(split.rgb_format, split.depth_codec, *split.read(index)[:3])
            skip_frame(split, index, problem or "TensorFlow cannot decode it (PIL can)", strict=self.strict,
                       skipped=self.skipped)
        self.handed.clear()
        return np.int64(-1)

    def after(self, decoded: tf.data.Dataset) -> tf.data.Dataset:
        """The pass `decoded` (dicts of rgb, depth and carried fields) and then the audit: one element, filtered out,
        whose making names the lost frames (name_lost) and then resets the flags."""
        carried = {k: spec for k, spec in decoded.element_spec.items() if k not in ("rgb", "depth")}

        @do_not_convert
        def end_of_pass(_):
            report = tf.numpy_function(self.name_lost, [self.arrived.read_value()], tf.int64, stateful=True)
            with tf.control_dependencies([report]):
                reset = self.arrived.assign(tf.zeros_like(self.arrived))
            with tf.control_dependencies([reset]):  # the element depends on both, so both run, in that order
                mark = {k: tf.zeros(spec.shape, spec.dtype) + tf.cast(tf.reshape(report, []), spec.dtype)
                        for k, spec in carried.items()}
            return {"rgb": tf.zeros([0, 0, 3], tf.uint8), "depth": tf.zeros([0, 0, 1]), **mark}

        return decoded.concatenate(tf.data.Dataset.range(1).map(end_of_pass).filter(do_not_convert(lambda _: False)))


def streamed_frames(split: Split, indices=None, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """The frames of a split streamed decoded (TFDS), reshuffled every pass with shuffle_seed; only the depth's
    invalid values are set to 0 here. It has no frame indices to choose: DataError for a worker's shard."""
    if indices is not None:
        raise DataError(f"{split.source} [{split.name}] is read as one TFDS stream, which cannot be split "
                        "between workers; train on several machines from the extracted nyudepthv2/ folder")
    decoded = split.stream(split.keys, shuffle_seed)
    return decoded.map(do_not_convert(lambda frame: {**frame, "depth": finite_positive(frame["depth"])}))


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------



def decode_rgb(blob, hw, rgb_format, min_hw=None, orientation=1):
    """An RGB blob stored as rgb_format (filecheck.RGB_FORMATS), its raw hw and EXIF orientation (1-8) -> uint8
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
    (filecheck.EXIF_TURNS). Gathered from the table, not branched: a branch per frame costs ~0.5 ms."""
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
    0 = invalid (and codec.saturated). A frame handed over as an array is raw float32 metres (filecheck.raw_depth).

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
