"""Speed and memory of the input pipeline, training and inference, each against the baseline a user would
otherwise run, how close they come to the machine's measured peak, and the quality a CPU reaches per minute.

    python benchmark.py [--quick] [--skip-quality] [--json benchmarks/results.json]

Absolute times drift on shared machines, so every figure is measured in this one run side by side with its
baseline: after a warm-up, the contenders take turns (A B A B ...) and each ratio is formed per repeat, so load
from other processes falls on both. Each figure is the median over the repeats, with its min and max.
The JSON's top-level numbers are those medians; the Markdown table printed at the end is README-ready.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import csv
import dataclasses
import io
import itertools
import json
import multiprocessing
import operator
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import skimage.transform
import tensorflow as tf
from PIL import Image

import data
import train
from predict import predict_depth_m

ROOT = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------
# What to measure, at which size
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One way to compile a model for training (train.py's speed flags)."""

    name: str
    jit_compile: bool = False
    steps_per_execution: int = 1
    mixed_precision: bool = False

    def flags(self) -> list[str]:
        return [*(["--jit-compile"] if self.jit_compile else []), "--steps-per-execution", str(self.steps_per_execution),
                *(["--mixed-precision"] if self.mixed_precision else [])]


KERAS_DEFAULTS = TrainConfig("keras defaults")
MIXED_PRECISION = TrainConfig("mixed precision", mixed_precision=True)  # a candidate only where a GPU exists


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big and how often: one row of SIZES. Sizes in pixels (height, width), times in minutes."""

    repeats: int  # timed runs per figure, after one warm-up
    input_hw: tuple[int, int]  # network input; the UNet's target has the same size
    batch_size: int
    pipeline_batches: int  # batches timed per pipeline run
    pipeline_warmup_batches: int  # discarded from each fresh iterator before timing
    profile_frames: int  # frames each stage of the pipeline profile runs over
    memory_frames: tuple[int, int]  # the small and the large synthetic set of the memory measure
    memory_repeats: int
    densedepth_memory_batches: int  # batches the zip-in-RAM loader reads (its peak is the zip it holds)
    train_steps: int  # steps timed per training run (after one warm-up execution)
    train_candidates: tuple[TrainConfig, ...]
    transfer_encoder: str
    infer_hw: tuple[int, int]  # the photographs' size
    infer_images: int  # images per inference run, predicted in batches of each of infer_batches
    infer_batches: tuple[int, ...]
    matmul_n: int  # the peak measure's float32 matmul is n x n @ n x n
    conv_shape: tuple[int, int, int, int]  # the peak measure's 3x3 convolution: input [B, H, W, C], C filters
    quality_minutes: tuple[float, ...]
    quality_frames: int | None  # training frames of the cached set the quality runs use (None: the demo's set)
    quality_input_hw: tuple[int, int]
    quality_eval_frames: int | None  # test frames evaluate.py scores (None: all)
    quality_baseline_frames: int  # training frames averaged for evaluate.py's mean-depth baseline


SIZES = {
    "full": Sizes(
        repeats=5, input_hw=data.INPUT_HW, batch_size=4, pipeline_batches=50, pipeline_warmup_batches=4, profile_frames=32,
        memory_frames=(200, 2000), memory_repeats=5, densedepth_memory_batches=10, train_steps=4,
        train_candidates=(TrainConfig("XLA", jit_compile=True), TrainConfig("steps_per_execution=4", steps_per_execution=4)),
        transfer_encoder="densenet169", infer_hw=(480, 640), infer_images=8, infer_batches=(1, 8),
        matmul_n=4096, conv_shape=(8, 128, 128, 128), quality_minutes=(2.0, 5.0, 10.0), quality_frames=None,
        quality_input_hw=data.INPUT_HW, quality_eval_frames=None, quality_baseline_frames=200,
    ),
    # Every code path on tiny sizes, in under 3 minutes; the transfer model on VGG16, which compiles in seconds.
    "quick": Sizes(
        repeats=3, input_hw=(48, 64), batch_size=4, pipeline_batches=4, pipeline_warmup_batches=1, profile_frames=8,
        memory_frames=(16, 64), memory_repeats=2, densedepth_memory_batches=2, train_steps=2,
        train_candidates=(TrainConfig("steps_per_execution=2", steps_per_execution=2),),  # XLA compiles too long here
        transfer_encoder="vgg16", infer_hw=(96, 128), infer_images=4, infer_batches=(1, 4),
        matmul_n=512, conv_shape=(2, 32, 32, 32), quality_minutes=(0.1,), quality_frames=64,
        quality_input_hw=(48, 64), quality_eval_frames=4, quality_baseline_frames=8,
    ),
}

MODEL_KINDS = ("unet", "transfer")
TEST_FRAMES = 8  # test frames in each cached synthetic set: the photographs of the inference measure

# What each top-level number of the JSON is (all medians over the repeats).
DEFINITIONS = {
    "pipeline_speedup": "samples/s of data.make_dataset (training=True) over the DenseDepth-style PyDataset on 2 threads",
    "pipeline_stall": "UNet training-step time with train.py's input pipeline over the time with one batch already "
                      "in memory, in the UNet's fastest configuration (1 = training never waits)",
    "pipeline_memory_growth": "peak RSS while iterating one tf.data epoch over the large synthetic set over that over "
                              "the small one (VmHWM reset at the epoch's start, a fresh process each)",
    **{f"train_speedup_{kind}": f"{kind} training images/s in the fastest correct configuration over Keras's "
                                "defaults (train.py's defaults)" for kind in MODEL_KINDS},
    **{f"infer_speedup_{kind}": f"{kind} ms per photo of a plain model.predict at batch 1 over the fastest correct "
                                "path at its best batch size" for kind in MODEL_KINDS},
    "peak_fraction_train": "UNet training FLOP/s (a step counted as 3x the forward FLOPs, which TF's profiler "
                           "counts) in its fastest configuration over the machine's measured float32 peak",
    "peak_fraction_infer": "UNet forward FLOP/s on the fastest inference path (end-to-end time) over the machine's "
                           "measured float32 peak",
}

# top-level key -> (comparison, bound): the goals
GOALS = {"pipeline_speedup": (">=", 10.0), "pipeline_stall": ("<=", 1.05), "pipeline_memory_growth": ("<=", 1.10)}
COMPARISONS = {">=": operator.ge, "<=": operator.le}


# ---------------------------------------------------------------------------
# Taking turns, and summarising the runs
# ---------------------------------------------------------------------------

def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(measures: dict, repeats: int, warmups: int = 1) -> dict[str, list[float]]:
    """{name: [one value per repeat]} of `measures` (name -> no-argument callable returning a number): each is
    called `warmups` times unrecorded, then they take turns, A B C A B C ..., `repeats` times."""
    for _ in range(warmups):
        for measure in measures.values():
            measure()
    runs = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            runs[name].append(float(measure()))
    return runs


def summary(runs, unit: str) -> dict:
    """{median, min, max, runs, unit} of one figure's runs."""
    return {"median": float(np.median(runs)), "min": float(np.min(runs)), "max": float(np.max(runs)),
            "runs": [float(v) for v in runs], "unit": unit}


def ratio_summary(numerators, denominators) -> dict:
    """summary() of the per-repeat ratios numerator / denominator (runs taken side by side)."""
    return summary([a / b for a, b in zip(numerators, denominators)], "ratio")


# ---------------------------------------------------------------------------
# The synthetic sets, cached between runs
# ---------------------------------------------------------------------------

def synthetic_dir(cache: Path, frames: int) -> Path:
    """cache/synth<frames>: the synthetic NYU-format set of `frames` training frames (written on first use, ~30 ms
    per frame on 2 cores) and TEST_FRAMES test frames."""
    return data.ensure_synthetic(cache / f"synth{frames}", train=frames, test=TEST_FRAMES)


def quality_data(path: str | None, cache: Path, sizes: Sizes) -> Path:
    """The set the quality runs use: `path` if given, else the demo's (train.py writes it on first use) or,
    when sizes.quality_frames is set, the cached set of that many frames."""
    if path is not None:
        return Path(path)
    return Path(train.DEFAULT_DATA) if sizes.quality_frames is None else synthetic_dir(cache, sizes.quality_frames)


def train_split(dataset_dir) -> data.Split:
    return data.open_source(dataset_dir).split("train")


# ---------------------------------------------------------------------------
# The baseline loader: per sample in Python, as DenseDepth's
# ---------------------------------------------------------------------------

# depth format -> metres per PNG unit (the numpy twin of data.py's in-graph decoders)
PNG_DEPTH_M_PER_UNIT = {"png8_10m": 10.0 / 255.0, "png16_mm": 1e-3}


def augment_numpy(rgb, y_true, rng: np.random.Generator, config: data.Augment):
    """data.augment's augmentations in numpy: flip (image and target together), channel permutation,
    brightness, contrast and gamma jitter (image only). rgb [h, w, 3] in [0, 1], y_true [h', w', 2]."""
    if rng.random() < config.flip:
        rgb, y_true = rgb[:, ::-1], y_true[:, ::-1]
    if rng.random() < config.channel_swap:
        rgb = rgb[..., rng.permutation(3)]
    rgb = rgb + rng.uniform(-config.brightness, config.brightness)
    mean = rgb.mean(axis=(0, 1))
    rgb = (rgb - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
    rgb = np.clip(rgb, 0.0, 1.0) ** rng.uniform(1 - config.gamma, 1 + config.gamma)
    return rgb.astype(np.float32), np.ascontiguousarray(y_true)


def skimage_resize(image, hw):
    """DenseDepth's nyu_resize: scikit-image's anti-aliased bilinear resize to hw = (h, w), values kept."""
    return skimage.transform.resize(image, hw, order=1, mode="reflect", anti_aliasing=True, preserve_range=True)


class DenseDepthLoader(keras.utils.PyDataset):
    """The per-sample Python loader DenseDepth trains with (its NYU_BasicAugmentRGBSequence), as a PyDataset:
    each sample is read with split.reader, decoded with PIL, resized with scikit-image and augmented in numpy.

    Batches are data.make_dataset's: (rgb float32 [B, *input_hw, 3] in [0, 1], y_true float32
    [B, *target_hw, 2] = encoded depth and validity mask). Shuffled once, seeded, as DenseDepth's.
    """

    def __init__(self, split: data.Split, *, batch_size: int, input_hw, target_hw, depth_scale: data.DepthScale,
                 augmentation: data.Augment = data.Augment(), seed: int = 0, workers: int = 2):
        super().__init__(workers=workers)
        if split.rgb_format != "image" or split.depth_format not in PNG_DEPTH_M_PER_UNIT:
            raise ValueError(f"the DenseDepth-style loader reads image files, not {split.rgb_format} / {split.depth_format}")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.input_hw, self.target_hw = tuple(input_hw), tuple(target_hw)
        self.depth_scale, self.augmentation = depth_scale, augmentation
        self.order = np.random.default_rng(seed).permutation(len(split))

    def __len__(self):
        return len(self.split) // self.batch_size

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rgb, y_true = zip(*(self.example(int(row)) for row in rows))
        return np.stack(rgb), np.stack(y_true)

    def example(self, row: int):
        """Frame `row` of the split -> (rgb [*input_hw, 3], y_true [*target_hw, 2]), augmented."""
        rgb_bytes, depth_bytes, _ = self.split.reader(self.split.keys[row])
        rgb = skimage_rgb(pil_rgb(rgb_bytes), self.input_hw)
        y_true = skimage_target(pil_depth_m(depth_bytes, self.split.depth_format), self.target_hw, self.depth_scale)
        return augment_numpy(rgb, y_true, np.random.default_rng([self.seed, row]), self.augmentation)


# The DenseDepth-style loader's stages, one function each so the profile times exactly what the loader runs.

def pil_rgb(blob: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> float32 [H, W, 3] in [0, 1], decoded with PIL."""
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), np.float32) / 255.0


def pil_depth_m(blob: bytes, depth_format: str) -> np.ndarray:
    """Depth PNG bytes -> float32 [H, W] metres (0 = invalid), decoded with PIL."""
    return np.asarray(Image.open(io.BytesIO(blob)), np.float32) * PNG_DEPTH_M_PER_UNIT[depth_format]


def skimage_rgb(rgb: np.ndarray, hw) -> np.ndarray:
    return np.clip(skimage_resize(rgb, hw), 0.0, 1.0)


def skimage_target(depth_m: np.ndarray, hw, depth_scale: data.DepthScale) -> np.ndarray:
    """Depth [H, W] metres -> y_true [*hw, 2] (encoded depth, mask): data.resize_depth's valid-pixel average, so
    holes never blend into their neighbours, then data.pack_target's layout."""
    valid = (depth_m > 0).astype(np.float32)
    weight = skimage_resize(valid, hw)
    mask = weight >= 0.5
    depth = np.where(mask, skimage_resize(depth_m * valid, hw) / np.maximum(weight, 1e-6), 0.0)
    target = np.where(mask, np.asarray(depth_scale.encode(depth)), 0.0)
    return np.stack([target, mask], axis=-1).astype(np.float32)


def pydataset_batches(loader: keras.utils.PyDataset):
    """loader's batches in order, epoch after epoch, built by loader.workers threads at most loader.max_queue_size
    batches ahead: how Keras's fit consumes a PyDataset with use_multiprocessing=False."""
    pool = concurrent.futures.ThreadPoolExecutor(loader.workers)
    indices = itertools.cycle(range(len(loader)))
    queue = collections.deque(pool.submit(loader.__getitem__, next(indices)) for _ in range(loader.max_queue_size))
    try:
        while True:
            yield queue.popleft().result()
            queue.append(pool.submit(loader.__getitem__, next(indices)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the batches in progress end before the next measure starts


def zip_in_ram(split: data.Split) -> data.Split:
    """The split with every file of its zip read into memory first, as DenseDepth's extract_zip does."""
    with zipfile.ZipFile(split.source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return dataclasses.replace(split, reader=data.PairReader(files.__getitem__))


# ---------------------------------------------------------------------------
# 1. Input pipeline: throughput
# ---------------------------------------------------------------------------

def samples_per_s(make_batches, batches: int, warmup_batches: int, batch_size: int) -> float:
    """Samples per second of `batches` batches from a fresh make_batches() iterator, after `warmup_batches`."""
    iterator = make_batches()
    for _ in range(warmup_batches):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def measure_pipeline(split: data.Split, sizes: Sizes, depth_scale: data.DepthScale) -> dict:
    """tf.data (data.make_dataset, training=True) against DenseDepthLoader on 2 threads: samples per second."""
    shapes = dict(batch_size=sizes.batch_size, input_hw=sizes.input_hw, target_hw=sizes.input_hw, depth_scale=depth_scale)
    dataset = data.make_dataset(split, training=True, **shapes).repeat()
    loader = DenseDepthLoader(split, **shapes, workers=2)
    contenders = {"tf.data": lambda: iter(dataset), "DenseDepth-style PyDataset": lambda: pydataset_batches(loader)}
    warmups = {"tf.data": sizes.pipeline_warmup_batches, "DenseDepth-style PyDataset": 1}
    runs = interleaved({name: lambda name=name, make=make: samples_per_s(make, sizes.pipeline_batches, warmups[name],
                                                                          sizes.batch_size)
                        for name, make in contenders.items()}, sizes.repeats)
    return {
        "samples_per_s": {name: summary(values, "samples/s") for name, values in runs.items()},
        "speedup": ratio_summary(runs["tf.data"], runs["DenseDepth-style PyDataset"]),
        "samples_per_run": sizes.pipeline_batches * sizes.batch_size,
        "note": "each run starts a fresh iterator and discards its first batches (tf.data: "
                f"{sizes.pipeline_warmup_batches}, the PyDataset: 1); the PyDataset runs on 2 threads, as fit(workers=2)",
    }


# ---------------------------------------------------------------------------
# 1b. Input pipeline: where a sample's time goes
# ---------------------------------------------------------------------------

def ms_per_sample(fn, calls: list, samples: int, repeats: int) -> dict:
    """summary() of the ms per sample of fn(*arguments) for every arguments in `calls` (which together cover
    `samples` samples), `repeats` times after one warm-up pass."""
    def one_pass() -> float:
        start = time.perf_counter()
        for arguments in calls:
            fn(*arguments)
        return (time.perf_counter() - start) / samples * 1e3

    one_pass()
    return summary([one_pass() for _ in range(repeats)], "ms per sample")


def tfdata_stages(split: data.Split, hw, depth_scale: data.DepthScale, rows: list[int]) -> dict:
    """name -> (function, the arguments of each call) for each stage of data.make_dataset (training=True), in order;
    every TensorFlow stage is the graph tf.data runs (a tf.function), fed the previous stage's outputs."""
    read = data._reader(split, strict=False)
    blobs = [read(np.asarray([row]))[1:] for row in rows]  # (rgb [1], depth [1], hw [1, 2])
    rgb_blobs = [(tf.constant(rgb[0]),) for rgb, _, _ in blobs]
    depth_blobs = [(tf.constant(depth[0]), tf.constant(raw_hw[0])) for _, depth, raw_hw in blobs]
    decode_rgb = tf.function(lambda blob: data._decode_rgb(blob, None, split.rgb_format, hw))
    decode_depth = tf.function(data._DEPTH_DECODERS[split.depth_format])
    decoded = [{"rgb": decode_rgb(*r), "depth": decode_depth(*d)} for r, d in zip(rgb_blobs, depth_blobs)]
    example = tf.function(lambda rgb, depth: data.to_example({"rgb": rgb, "depth": depth}, hw, hw, depth_scale))
    examples = [example(frame["rgb"], frame["depth"]) for frame in decoded]
    augment = tf.function(lambda rgb, y, seed: data.augment(rgb, y, seed, data.Augment()))
    seeds = [tf.constant([row, 1], tf.int64) for row in rows]
    return {
        f"read bytes and check them (Python, {data.READ_CHUNK} frames per call)":
            (read, [(np.asarray(rows[i:i + data.READ_CHUNK]),) for i in range(0, len(rows), data.READ_CHUNK)]),
        "decode JPEG at the input's scale": (decode_rgb, rgb_blobs),
        "decode depth PNG": (decode_depth, depth_blobs),
        "resize RGB and depth, encode the target": (example, [(f["rgb"], f["depth"]) for f in decoded]),
        "augment": (augment, [(*ex, seed) for ex, seed in zip(examples, seeds)]),
    }


def densedepth_stages(split: data.Split, hw, depth_scale: data.DepthScale, rows: list[int]) -> dict:
    """name -> (function, the arguments of each call) for each stage of DenseDepthLoader.example, in order."""
    blobs = [split.reader(split.keys[row]) for row in rows]
    rgbs = [pil_rgb(rgb) for rgb, _, _ in blobs]
    depths = [pil_depth_m(depth, split.depth_format) for _, depth, _ in blobs]
    small = [(skimage_rgb(rgb, hw), skimage_target(depth, hw, depth_scale)) for rgb, depth in zip(rgbs, depths)]
    return {
        "read bytes (Python)": (lambda row: split.reader(split.keys[row]), [(row,) for row in rows]),
        "decode JPEG (PIL)": (pil_rgb, [(rgb,) for rgb, _, _ in blobs]),
        "decode depth PNG (PIL)": (lambda blob: pil_depth_m(blob, split.depth_format), [(d,) for _, d, _ in blobs]),
        "resize RGB (scikit-image)": (lambda rgb: skimage_rgb(rgb, hw), [(rgb,) for rgb in rgbs]),
        "resize depth, encode the target (scikit-image)": (lambda d: skimage_target(d, hw, depth_scale),
                                                           [(d,) for d in depths]),
        "augment (numpy)": (lambda rgb, y, row: augment_numpy(rgb, y, np.random.default_rng([0, row]), data.Augment()),
                            [(*pair, row) for pair, row in zip(small, rows)]),
    }


def stage_profile(dataset_dir: str, hw, frames: int, repeats: int) -> dict:
    """{loader: {stage: summary of ms per sample}} on ONE core: TensorFlow's thread pools set to one thread before
    its first op (so meant for a fresh process), and every stage run serially. The sum is a sample's CPU cost."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    split, depth_scale = train_split(dataset_dir), data.DepthScale()
    rows = list(range(min(frames, len(split))))
    stages = {"tf.data": tfdata_stages(split, hw, depth_scale, rows),
              "DenseDepth-style PyDataset": densedepth_stages(split, hw, depth_scale, rows)}
    return {loader: {name: ms_per_sample(fn, calls, len(rows), repeats) for name, (fn, calls) in named.items()}
            for loader, named in stages.items()}


def reading_rate(split: data.Split, chunk: int, samples: int) -> float:
    """Frames per second of data.blobs (the reading stage alone: Python reads through tf.numpy_function) with
    `chunk` frames per Python call, on all cores."""
    stage = data.blobs(split, chunk=chunk).repeat().prefetch(tf.data.AUTOTUNE)
    return samples_per_s(lambda: iter(stage), samples, warmup_batches=2 * chunk, batch_size=1)


def measure_pipeline_profile(dataset_dir: Path, pipeline: dict, sizes: Sizes) -> dict:
    """Where a sample's time goes, for both loaders: each stage's ms per sample on one core (in a fresh process),
    their total, and what the total allows on this machine's cores next to the rate measured with all of them;
    then the reading stage alone at one frame and at data.READ_CHUNK frames per Python call."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        stages = pool.apply(stage_profile, (str(dataset_dir), sizes.input_hw, sizes.profile_frames, sizes.repeats))
    cores = len(os.sched_getaffinity(0))
    totals = {loader: sum(figure["median"] for figure in named.values()) for loader, named in stages.items()}
    split = train_split(dataset_dir)
    one, chunked = "1 frame per call", f"{data.READ_CHUNK} frames per call"
    reading = interleaved({name: lambda chunk=chunk: reading_rate(split, chunk, sizes.pipeline_batches * sizes.batch_size)
                           for name, chunk in ((one, 1), (chunked, data.READ_CHUNK))}, sizes.repeats)
    return {
        "stages_ms_per_sample": stages,
        "total_ms_per_sample": totals,
        "cores": cores,
        # if every core did nothing but this loader's stages
        "ceiling_samples_per_s": {loader: cores * 1e3 / total for loader, total in totals.items()},
        "measured_samples_per_s": {loader: figure["median"] for loader, figure in pipeline["samples_per_s"].items()},
        # the CPU cost per sample tf.data would need for the 10x goal, the baseline's being what it is
        "goal_ms_per_sample": totals["DenseDepth-style PyDataset"] / GOALS["pipeline_speedup"][1],
        "reading_stage_samples_per_s": {name: summary(values, "samples/s") for name, values in reading.items()},
        "reading_stage_speedup": ratio_summary(reading[chunked], reading[one]),
    }


# ---------------------------------------------------------------------------
# 2. Memory: peak RSS of one epoch, in a fresh process each
# ---------------------------------------------------------------------------

def tfdata_batches(split: data.Split, batch_size: int, hw):
    return iter(data.make_dataset(split, batch_size=batch_size, input_hw=hw, target_hw=hw, training=True))


def densedepth_batches(split: data.Split, batch_size: int, hw):
    loader = DenseDepthLoader(zip_in_ram(split), batch_size=batch_size, input_hw=hw, target_hw=hw,
                              depth_scale=data.DepthScale())
    return pydataset_batches(loader)


MEMORY_LOADERS = {"tf.data": tfdata_batches, "DenseDepth (zip in RAM)": densedepth_batches}


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started (ru_maxrss), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS mark (VmHWM) from the current RSS (Linux: /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_since_reset_mib() -> float:
    """VmHWM: the peak resident memory since reset_peak_rss (or the start), in MiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024.0  # "VmHWM:  123456 kB"


def epoch_peak_rss(loader: str, dataset_dir: str, batch_size: int, hw, batches: int | None) -> dict:
    """Peak RSS in MiB of this process while reading `batches` batches (None: one epoch) of MEMORY_LOADERS[loader]
    over dataset_dir's train split: {"epoch": the peak while reading, "process": ru_maxrss, which also covers
    TensorFlow's start-up}. Meant for a fresh process."""
    split = train_split(dataset_dir)
    reset_peak_rss()
    for _ in itertools.islice(MEMORY_LOADERS[loader](split, batch_size, hw), batches):
        pass
    return {"epoch": peak_rss_since_reset_mib(), "process": peak_rss_mib()}


def measure_memory(small: Path, large: Path, sizes: Sizes) -> dict:
    """Peak RSS of an epoch over the small and the large set, each in a freshly spawned process: tf.data (a
    whole epoch) and DenseDepth's loader (which holds the zip in RAM, so densedepth_memory_batches show its growth).

    Two processes run at a time: peak memory does not depend on timing, so there is no warm-up either.
    """
    paths, frames = {"small": small, "large": large}, dict(zip(("small", "large"), sizes.memory_frames))
    batches = {"tf.data": None, "DenseDepth (zip in RAM)": sizes.densedepth_memory_batches}
    jobs = [(loader, size) for loader in MEMORY_LOADERS for size in paths]
    runs = {job: [] for job in jobs}
    with multiprocessing.get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        for _ in range(sizes.memory_repeats):
            arguments = [(loader, str(paths[size]), sizes.batch_size, sizes.input_hw, batches[loader]) for loader, size in jobs]
            for job, rss in zip(jobs, pool.starmap(epoch_peak_rss, arguments, chunksize=1)):
                runs[job].append(rss)

    def figures(loader, key):
        return {f"{frames[size]} frames": summary([r[key] for r in runs[loader, size]], "MiB") for size in paths}

    return {
        loader: {
            "frames": frames,
            "batches_read": "one epoch" if batches[loader] is None else batches[loader],
            "epoch_peak_rss_mib": figures(loader, "epoch"),
            "process_peak_rss_mib": figures(loader, "process"),
            "growth": ratio_summary([r["epoch"] for r in runs[loader, "large"]], [r["epoch"] for r in runs[loader, "small"]]),
            "process_growth": ratio_summary([r["process"] for r in runs[loader, "large"]],
                                            [r["process"] for r in runs[loader, "small"]]),
        }
        for loader in MEMORY_LOADERS
    }


# ---------------------------------------------------------------------------
# 3. Training speed, and whether training waits for data
# ---------------------------------------------------------------------------

class StepClock(keras.callbacks.Callback):
    """Training steps per second, timed from the end of the first executed batch group (the warm-up) to the last."""

    def on_train_begin(self, logs=None):
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        self.marks.append((batch, time.perf_counter()))

    def steps_per_s(self) -> float:
        (first_step, start), (last_step, end) = self.marks[0], self.marks[-1]
        return (last_step - first_step) / (end - start)


def train_args(kind: str, sizes: Sizes, config: TrainConfig) -> argparse.Namespace:
    """train.py's arguments for model `kind` at the benchmark's size, compiled as `config` says."""
    return train.parse_args(["--model", kind, "--encoder", sizes.transfer_encoder, "--encoder-weights", "none",
                             "--input-size", *map(str, sizes.input_hw), "--bs", str(sizes.batch_size), *config.flags()])


def compiled_net(args: argparse.Namespace, depth_scale: data.DepthScale) -> keras.Model:
    """The model train.py trains for `args`, compiled as train.py compiles it."""
    train.set_precision(args.mixed_precision)
    net = train.compile_net(train.build_net(args, depth_scale), args, depth_scale)
    train.set_precision(False)
    return net


def train_images_per_s(net: keras.Model, dataset: tf.data.Dataset, steps: int, steps_per_execution: int,
                       batch_size: int) -> float:
    """Images per second of `steps` training steps of net.fit on `dataset`, after one warm-up execution."""
    clock = StepClock()
    timed = -(-steps // steps_per_execution) * steps_per_execution
    net.fit(dataset, epochs=1, steps_per_epoch=steps_per_execution + timed, verbose=0, callbacks=[clock])
    return clock.steps_per_s() * batch_size


def warmup_loss(net: keras.Model, dataset: tf.data.Dataset, steps: int) -> float:
    """Mean training loss over the first `steps` steps (this also traces and compiles the step)."""
    return float(net.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0).history["loss"][-1])


def train_candidates(sizes: Sizes) -> tuple[TrainConfig, ...]:
    """The configurations tried against Keras's defaults; mixed precision only where a GPU exists."""
    return sizes.train_candidates + ((MIXED_PRECISION,) if tf.config.list_physical_devices("GPU") else ())


def measure_training(kind: str, split: data.Split, sizes: Sizes, depth_scale: data.DepthScale) -> tuple[dict, dict]:
    """Images per second of a training step, Keras defaults against each candidate configuration, all from the
    same weights on the same in-memory batch. A candidate counts as correct when its loss over the warm-up steps
    matches the defaults' to 1e-3 (relative). Returns (results, {config name: (net, args)})."""
    configs = (KERAS_DEFAULTS, *train_candidates(sizes))
    built = {}
    for config in configs:
        say(f"training {kind}: building with {config.name}")
        args = train_args(kind, sizes, config)
        built[config.name] = (compiled_net(args, depth_scale), args, config)
    initial = built[KERAS_DEFAULTS.name][0].get_weights()
    for net, _, _ in built.values():
        net.set_weights(initial)
    target_hw = built[KERAS_DEFAULTS.name][0].output_shape[1:3]
    batch = next(iter(data.make_dataset(split, batch_size=sizes.batch_size, input_hw=sizes.input_hw,
                                        target_hw=target_hw, depth_scale=depth_scale, training=True)))
    in_memory = tf.data.Dataset.from_tensors(batch).repeat()
    check_steps = int(np.lcm.reduce([config.steps_per_execution for config in configs]))
    losses = {}
    for name, (net, _, _) in built.items():
        start = time.perf_counter()
        losses[name] = warmup_loss(net, in_memory, check_steps)
        say(f"training {kind}: {name}: warm-up loss {losses[name]:.5f} in {time.perf_counter() - start:.1f} s")
    correct = {name: bool(np.isclose(loss, losses[KERAS_DEFAULTS.name], rtol=1e-3)) for name, loss in losses.items()}
    runs = interleaved({
        name: lambda net=net, config=config: train_images_per_s(net, in_memory, sizes.train_steps,
                                                                 config.steps_per_execution, sizes.batch_size)
        for name, (net, _, config) in built.items()
    }, sizes.repeats, warmups=0)  # the warm-up loss runs were the warm-up
    speedups = {name: ratio_summary(runs[name], runs[KERAS_DEFAULTS.name]) for name in built}
    fastest = max((name for name in built if correct[name]), key=lambda name: speedups[name]["median"])
    say(f"training {kind}: fastest correct configuration: {fastest} ({speedups[fastest]['median']:.2f}x)")
    results = {
        "model": built[KERAS_DEFAULTS.name][0].name,
        "parameters": built[KERAS_DEFAULTS.name][0].count_params(),
        "input_hw": list(sizes.input_hw), "batch_size": sizes.batch_size,
        "images_per_s": {name: summary(values, "images/s") for name, values in runs.items()},
        "speedup_vs_defaults": speedups,
        "warmup_loss": losses, "correct": correct,
        "fastest": fastest,
        "speedup": speedups[fastest],
        "configs": {name: dataclasses.asdict(config) for name, (_, _, config) in built.items()},
    }
    return results, {name: (net, args) for name, (net, args, _) in built.items()}


def measure_stall(net: keras.Model, args: argparse.Namespace, split: data.Split, sizes: Sizes,
                  depth_scale: data.DepthScale) -> dict:
    """Training-step time with train.py's real input pipeline over the time with one batch already in memory
    (> 1: training waits for data or the pipeline slows the step). net: the configuration being trained."""
    real, _ = train.datasets(args, split, None, net.output_shape[1:3], depth_scale)
    in_memory = tf.data.Dataset.from_tensors(next(iter(real))).repeat()
    spe = args.steps_per_execution
    runs = interleaved({
        name: lambda dataset=dataset: train_images_per_s(net, dataset, sizes.train_steps, spe, sizes.batch_size)
        for name, dataset in (("real pipeline", real), ("batch in memory", in_memory))
    }, sizes.repeats)
    return {
        "model": net.name,
        "images_per_s": {name: summary(values, "images/s") for name, values in runs.items()},
        # step time with the pipeline / step time in memory = images/s in memory / images/s with the pipeline
        "stall": ratio_summary(runs["batch in memory"], runs["real pipeline"]),
    }


# ---------------------------------------------------------------------------
# 4. Inference: ms per photograph
# ---------------------------------------------------------------------------

def keras_predict_depth_m(net: keras.Model, rgb, depth_scale: data.DepthScale, batch_size: int) -> np.ndarray:
    """The plain path a user writes: uint8 [B, H, W, 3] -> depth float32 [B, H, W] metres through model.predict,
    with predict_depth_m's resizing, decoding and clipping (its flip=False result)."""
    x = data.resize_rgb(rgb, net.input_shape[1:3])
    depth = depth_scale.decode(net.predict(x, batch_size=batch_size, verbose=0))
    depth = tf.image.resize(depth, rgb.shape[1:3], method="bilinear", antialias=True)
    return tf.clip_by_value(depth[..., 0], depth_scale.min_depth_m, depth_scale.max_depth_m).numpy()


def in_batches(predict, images: np.ndarray, batch_size: int) -> np.ndarray:
    """predict(chunk) over images in chunks of batch_size, concatenated."""
    return np.concatenate([predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def xla_clone(net: keras.Model) -> keras.Model:
    """A copy of net whose model.predict runs XLA-compiled."""
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    clone.compile(jit_compile=True)
    return clone


def measure_inference(net: keras.Model, images: np.ndarray, sizes: Sizes, depth_scale: data.DepthScale) -> dict:
    """ms per photograph: the plain model.predict path against predict.py's predict_depth_m (tf.function with a
    fixed input signature) and model.predict under XLA, at each batch size. A path counts as correct when its
    depth maps are within 1e-4 m of the plain path's."""
    xla = xla_clone(net)
    paths = {
        "model.predict": lambda x: keras_predict_depth_m(net, x, depth_scale, len(x)),
        "model.predict, XLA": lambda x: keras_predict_depth_m(xla, x, depth_scale, len(x)),
        "predict.py": lambda x: predict_depth_m(net, x, depth_scale, flip=False),
    }
    runs_of = {(path, b): (lambda predict=predict, b=b: in_batches(predict, images, b)) for path, predict in paths.items()
               for b in sizes.infer_batches}
    reference = runs_of["model.predict", 1]()
    # This first pass of every path (tracing, XLA compilation) is also the warm-up.
    max_diff = {key: float(np.max(np.abs(run() - reference))) for key, run in runs_of.items()}

    def ms_per_image(run):
        start = time.perf_counter()
        run()
        return 1000.0 * (time.perf_counter() - start) / len(images)

    runs = interleaved({key: lambda run=run: ms_per_image(run) for key, run in runs_of.items()}, sizes.repeats, warmups=0)
    label = {key: f"{key[0]} @ batch {key[1]}" for key in runs}
    correct = {key: max_diff[key] <= 1e-4 for key in runs}
    fastest = min((key for key in runs if correct[key]), key=lambda key: np.median(runs[key]))
    plain = runs["model.predict", 1]
    return {
        "model": net.name,
        "photo_hw": list(images.shape[1:3]), "input_hw": list(net.input_shape[1:3]),
        "ms_per_image": {label[key]: summary(values, "ms/image") for key, values in runs.items()},
        "max_abs_diff_m": {label[key]: max_diff[key] for key in runs}, "correct": {label[key]: correct[key] for key in runs},
        "speedup_same_batch": {label[key]: ratio_summary(runs["model.predict", key[1]], values) for key, values in runs.items()},
        "fastest": label[fastest],
        # the plain path one photograph at a time against the fastest correct path at its best batch size
        "speedup": ratio_summary(plain, runs[fastest]),
        "fastest_images_per_s": summary([1000.0 / v for v in runs[fastest]], "images/s"),
    }


# ---------------------------------------------------------------------------
# 5. Distance to the limit: counted FLOPs against the measured peak
# ---------------------------------------------------------------------------

def forward_flops(net: keras.Model) -> dict:
    """Floating-point operations of one forward pass of one image, counted by TensorFlow's profiler
    (float_operation) on the traced graph at batch 1; conv_flops: 2 x the multiply-accumulates of every
    convolution and dense layer, counted from the layers' shapes, as a cross-check."""
    forward = tf.function(lambda x: net(x, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec([1, *net.input_shape[1:]], tf.float32)).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    counted = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    conv = 0
    for layer in net.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            # Each output position costs one multiply-accumulate per kernel weight, whatever the layer:
            # [kh, kw, in, out], depthwise [kh, kw, in, multiplier], dense [in, out].
            positions = int(np.prod(layer.output.shape[1:-1]))
            conv += 2 * positions * layer.get_weights()[0].size
    return {"flops_per_image": float(counted), "conv_flops_per_image": float(conv),
            "counted_by": "tf.compat.v1.profiler float_operation on the forward tf.function's graph, batch 1"}


def measure_peak(sizes: Sizes) -> dict:
    """The machine's float32 FLOP/s on a large matmul and a large 3x3 convolution in TensorFlow."""
    n = sizes.matmul_n
    b, h, w, c = sizes.conv_shape
    a, m = tf.random.normal([n, n]), tf.random.normal([n, n])
    x, k = tf.random.normal([b, h, w, c]), tf.random.normal([3, 3, c, c])
    work = {
        f"matmul {n}x{n}": (tf.function(lambda: tf.reduce_sum(tf.matmul(a, m))), 2.0 * n**3),
        f"conv3x3 {b}x{h}x{w}x{c} -> {c}": (tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, k, 1, "SAME"))),
                                            2.0 * b * h * w * c * c * 9),
    }

    def gflop_per_s(op, flops):
        start = time.perf_counter()
        op().numpy()
        return flops / (time.perf_counter() - start) / 1e9

    runs = interleaved({name: lambda op=op, flops=flops: gflop_per_s(op, flops) for name, (op, flops) in work.items()},
                       sizes.repeats)
    figures = {name: summary(values, "GFLOP/s") for name, values in runs.items()}
    best = max(figures, key=lambda name: figures[name]["median"])
    return {"gflop_per_s": figures, "peak": best, "peak_gflop_per_s": figures[best]["median"]}


# ---------------------------------------------------------------------------
# 6. Quality per minute of CPU training (train.py and evaluate.py, as the demo runs them)
# ---------------------------------------------------------------------------

def run_script(*argv) -> float:
    """Run one of this project's scripts with this Python, from the project root; returns its wall time in s."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure_quality(dataset_dir, work: Path, sizes: Sizes) -> dict:
    """delta1 and abs_rel on the test split after each training budget of the demo's recipe, beside
    evaluate.py's trivial baseline (the training-set mean depth everywhere)."""
    rows, baseline = [], None
    for minutes in sizes.quality_minutes:
        run_dir, out = work / f"quality-{minutes:g}min", work / f"quality-{minutes:g}min-eval"
        for stale in (run_dir, out):  # train.py refuses to overwrite a run
            shutil.rmtree(stale, ignore_errors=True)
        say(f"quality: training the demo's UNet for {minutes:g} min")
        train_s = run_script("train.py", "--data", str(dataset_dir), "--model", "unet", "--base-filters", "16",
                             "--lr", "1e-3", "--epochs", "100", "--steps-per-epoch", "75", "--time-budget", f"{minutes:g}",
                             "--input-size", *map(str, sizes.quality_input_hw), "--out", str(run_dir))
        limit = [] if sizes.quality_eval_frames is None else ["--limit", str(sizes.quality_eval_frames)]
        run_script("evaluate.py", "--model", str(run_dir / "model.keras"), "--data", str(dataset_dir), "--out", str(out),
                   "--baseline-frames", str(sizes.quality_baseline_frames), *limit)
        metrics = json.loads((out / "metrics.json").read_text())
        with open(run_dir / "history.csv") as f:
            epochs = len(list(csv.DictReader(f)))
        (model_metrics,) = (entry["metrics"] for entry in metrics["models"].values())
        rows.append({"minutes": minutes, "train_wall_s": train_s, "epochs": epochs,
                     "delta1": model_metrics["delta1"], "abs_rel": model_metrics["abs_rel"]})
        baseline = {"label": metrics["baseline"]["label"], "delta1": metrics["baseline"]["metrics"]["delta1"],
                    "abs_rel": metrics["baseline"]["metrics"]["abs_rel"]}
        say(f"quality: {minutes:g} min: delta1 {rows[-1]['delta1']:.3f}, abs_rel {rows[-1]['abs_rel']:.3f} "
            f"(baseline {baseline['delta1']:.3f}, {baseline['abs_rel']:.3f})")
    return {"data": str(dataset_dir), "test_images": metrics["images"], "recipe": "train.py --model unet --base-filters 16 "
            "--lr 1e-3 --epochs 100 --steps-per-epoch 75 --time-budget M; evaluate.py defaults (flip, crop auto)",
            "input_hw": list(sizes.quality_input_hw), "budgets": rows, "baseline": baseline}


# ---------------------------------------------------------------------------
# The machine, the summary table and the command line
# ---------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the figures were measured on: CPU, cores, memory, GPUs, versions, thread settings, load."""
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "gpus": [device.name for device in tf.config.list_physical_devices("GPU")],
        "tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(),
        "tf_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},  # 0: TensorFlow decides
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "load_average_at_start": list(os.getloadavg()),
    }


def headline(results: dict) -> dict:
    """The issue's top-level numbers (medians) from the sections' results."""
    training, inference, limit = results["training"], results["inference"], results["limit"]
    unet_flops = limit["flops"]["unet"]["flops_per_image"]
    peak = limit["peak"]["peak_gflop_per_s"] * 1e9
    return {
        "pipeline_speedup": results["pipeline"]["speedup"]["median"],
        "pipeline_stall": results["stall"]["stall"]["median"],
        "pipeline_memory_growth": results["memory"]["tf.data"]["growth"]["median"],
        **{f"train_speedup_{kind}": training[kind]["speedup"]["median"] for kind in MODEL_KINDS},
        **{f"infer_speedup_{kind}": inference[kind]["speedup"]["median"] for kind in MODEL_KINDS},
        # a training step counted as 3 forward passes (forward, and backward for activations and weights)
        "peak_fraction_train": 3 * unet_flops * training["unet"]["images_per_s"][training["unet"]["fastest"]]["median"] / peak,
        "peak_fraction_infer": unet_flops * inference["unet"]["fastest_images_per_s"]["median"] / peak,
    }


def goals(numbers: dict) -> dict:
    """{key: {goal, met}} for every number the issue sets a goal for."""
    return {key: {"goal": f"{compare} {bound:g}", "met": bool(COMPARISONS[compare](numbers[key], bound))}
            for key, (compare, bound) in GOALS.items()}


def spread(figure: dict, digits: int = 2) -> str:
    """'median (min-max)' of a summary() figure."""
    return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}-{figure['max']:.{digits}f})"


def goal_cell(results: dict, key: str) -> str:
    goal = results["goals"][key]
    return f"{goal['goal']} {'met' if goal['met'] else 'NOT met'}"


def pipeline_rows(results: dict) -> list[tuple]:
    pipe, stall, memory = results["pipeline"], results["stall"], results["memory"]
    rates = pipe["samples_per_s"]
    small, large = (f"{n} frames" for n in results["settings"]["memory_frames"])
    rows = [
        ("Input pipeline, samples/s (2 cores)", f"DenseDepth-style PyDataset {spread(rates['DenseDepth-style PyDataset'], 1)}",
         f"tf.data {spread(rates['tf.data'], 1)}", f"{spread(pipe['speedup'], 1)}x", goal_cell(results, "pipeline_speedup")),
        (f"Training with the input pipeline ({stall['model']}), images/s",
         f"batch in memory {spread(stall['images_per_s']['batch in memory'])}",
         f"real pipeline {spread(stall['images_per_s']['real pipeline'])}",
         f"{spread(stall['stall'], 3)} (step-time ratio)", goal_cell(results, "pipeline_stall")),
    ]
    for loader, figures in memory.items():
        peaks = figures["epoch_peak_rss_mib"]
        rows.append((f"Peak RSS while reading ({loader}), MiB", f"{small}: {spread(peaks[small], 0)}",
                     f"{large}: {spread(peaks[large], 0)}", f"{spread(figures['growth'], 3)} (growth)",
                     goal_cell(results, "pipeline_memory_growth") if loader == "tf.data" else
                     f"reads {figures['batches_read']} batches: its peak is the zip it holds"))
    return rows


def profile_rows(results: dict) -> list[tuple]:
    profile = results["pipeline"]["profile"]
    baseline, ours = "DenseDepth-style PyDataset", "tf.data"
    stages, totals = profile["stages_ms_per_sample"], profile["total_ms_per_sample"]

    def breakdown(loader: str) -> str:
        return " + ".join(f"{name} {figure['median']:.2f}" for name, figure in stages[loader].items()) + \
            f" = **{totals[loader]:.2f}**"

    decode = sum(figure["median"] for name, figure in stages[ours].items() if name.startswith("decode"))
    cores, ceiling, measured = profile["cores"], profile["ceiling_samples_per_s"], profile["measured_samples_per_s"]
    (one, one_rate), (chunked, chunked_rate) = profile["reading_stage_samples_per_s"].items()
    return [
        ("Where a sample's CPU time goes, ms on one core", breakdown(baseline), breakdown(ours),
         f"{totals[baseline] / totals[ours]:.1f}x less CPU",
         f"10x needs <= {profile['goal_ms_per_sample']:.2f} ms per sample; the two decodes alone take {decode:.2f}"),
        (f"Samples/s if {cores} cores did only this, vs measured", f"{ceiling[baseline]:.0f} vs {measured[baseline]:.0f}",
         f"{ceiling[ours]:.0f} vs {measured[ours]:.0f}", "",
         f"measured / ceiling {measured[baseline] / ceiling[baseline]:.0%} and {measured[ours] / ceiling[ours]:.0%}: "
         "both are bound by their stages' CPU time, not by threads or waiting"),
        ("Reading stage alone (Python through tf.numpy_function), samples/s", f"{one} {spread(one_rate, 0)}",
         f"{chunked} {spread(chunked_rate, 0)}", f"{spread(profile['reading_stage_speedup'], 1)}x",
         "each call hands the GIL between threads; one frame per call capped the pipeline"),
    ]


def training_rows(results: dict) -> list[tuple]:
    rows = []
    for kind in MODEL_KINDS:
        t = results["training"][kind]
        others = "; ".join(f"{name} {spread(ratio)}x" for name, ratio in t["speedup_vs_defaults"].items()
                           if name != KERAS_DEFAULTS.name)
        rows.append((f"Training {t['model']}, images/s (batch {t['batch_size']})",
                     f"Keras defaults {spread(t['images_per_s'][KERAS_DEFAULTS.name])}",
                     f"fastest: {t['fastest']} {spread(t['images_per_s'][t['fastest']])}", f"{spread(t['speedup'])}x",
                     f"all tried: {others}"))
    return rows


def inference_rows(results: dict) -> list[tuple]:
    rows = []
    for kind in MODEL_KINDS:
        i = results["inference"][kind]
        plain = "model.predict @ batch 1"
        others = "; ".join(f"{name} {spread(ms, 1)}" for name, ms in i["ms_per_image"].items() if name not in (plain, i["fastest"]))
        rows.append((f"Inference {i['model']}, ms per {i['photo_hw'][1]}x{i['photo_hw'][0]} photo",
                     f"{plain} {spread(i['ms_per_image'][plain], 1)}", f"fastest: {i['fastest']} {spread(i['ms_per_image'][i['fastest']], 1)}",
                     f"{spread(i['speedup'])}x", f"others: {others}"))
    return rows


def limit_rows(results: dict) -> list[tuple]:
    limit = results["limit"]
    rows = [(f"Forward GFLOP per image, {results['training'][kind]['model']}", "",
             f"{limit['flops'][kind]['flops_per_image'] / 1e9:.2f}", "",
             f"TF profiler count; conv and dense layers alone {limit['flops'][kind]['conv_flops_per_image'] / 1e9:.2f}")
            for kind in MODEL_KINDS]
    peaks = "; ".join(f"{name} {spread(rate, 0)}" for name, rate in limit["peak"]["gflop_per_s"].items())
    return rows + [
        ("Machine peak, GFLOP/s (float32)", "", f"{limit['peak']['peak_gflop_per_s']:.0f}", "", peaks),
        ("Fraction of peak, UNet training", "", f"{results['peak_fraction_train']:.2f}", "",
         "a step counted as 3x the forward FLOPs; fastest configuration"),
        ("Fraction of peak, UNet inference", "", f"{results['peak_fraction_infer']:.2f}", "",
         "network FLOPs over end-to-end time of the fastest path"),
    ]


def quality_rows(results: dict) -> list[tuple]:
    quality = results.get("quality")
    if quality is None:
        return []
    base = quality["baseline"]
    return [(f"Quality after {row['minutes']:g} min of CPU training, delta1 / abs_rel",
             f"mean depth everywhere {base['delta1']:.3f} / {base['abs_rel']:.3f}",
             f"UNet (demo recipe) {row['delta1']:.3f} / {row['abs_rel']:.3f}", "",
             f"{row['epochs']} epochs of 75 steps; {quality['test_images']} test images")
            for row in quality["budgets"]]


def markdown(results: dict) -> str:
    """The README table: every figure beside its baseline, with the ratio; median (min-max) over the repeats."""
    m = results["machine"]
    rows = [*pipeline_rows(results), *profile_rows(results), *training_rows(results), *inference_rows(results), *limit_rows(results),
            *quality_rows(results)]
    lines = [
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, {m['memory_gib']} GiB RAM, "
        f"{'GPU ' + ', '.join(m['gpus']) if m['gpus'] else 'no GPU'}; TensorFlow {m['tensorflow']}, Keras {m['keras']}. "
        f"Median (min-max) of {results['settings']['repeats']} runs after a warm-up, each taken side by side with "
        "its baseline; ratios are formed per run.",
        "",
        "| measure | baseline | this project | ratio | goal / notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    seconds = results["duration_s"]
    footer = f"Run time {seconds['total'] / 60:.1f} min" + (
        f", of which {seconds['quality'] / 60:.1f} min for the quality runs." if "quality" in seconds else ".")
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows] + ["", footer])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, few repeats, a 0.1-minute quality run: every code path in about 1.5 minutes")
    parser.add_argument("--skip-quality", action="store_true",
                        help="leave out the quality-per-minute runs (about 18 minutes of the full run)")
    parser.add_argument("--json", default="benchmarks/results.json",
                        help="where to write the results (default: benchmarks/results.json)")
    parser.add_argument("--cache", default="data/bench",
                        help="folder of the cached synthetic sets, written on first use (default: data/bench)")
    parser.add_argument("--quality-data", default=None,
                        help=f"the set the quality runs train and evaluate on (default: the demo's, {train.DEFAULT_DATA}, "
                             "written on first use; with --quick, the cached 64-frame set)")
    parser.add_argument("--work", default="runs/benchmark",
                        help="folder for the quality runs' models and evaluations (default: runs/benchmark)")
    return parser.parse_args(argv)


def test_photos(dataset_dir: Path, sizes: Sizes) -> np.ndarray:
    """The set's test frames as uint8 photographs [infer_images, *infer_hw, 3]."""
    photos = np.stack([frame["rgb"].numpy() for frame in data.frames(data.open_source(dataset_dir).split("test"))])
    resized = tf.image.resize(photos[:sizes.infer_images], sizes.infer_hw, antialias=True)
    return tf.saturate_cast(tf.round(resized), tf.uint8).numpy()


def stopwatch():
    """A function returning the seconds since it was last called (or since stopwatch() was)."""
    last = [time.perf_counter()]

    def lap() -> float:
        now = time.perf_counter()
        elapsed, last[0] = now - last[0], now
        return elapsed

    return lap


def main(args: argparse.Namespace) -> dict:
    """Run every measure, write the JSON, print the Markdown table; returns the results."""
    lap, started = stopwatch(), time.perf_counter()
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    keras.utils.set_random_seed(0)
    depth_scale = data.DepthScale()
    results, seconds = {"machine": machine()}, {}
    say(f"{mode} run on {results['machine']['cpu']}, load average {results['machine']['load_average_at_start']}")
    cache = Path(args.cache)
    small, large = (synthetic_dir(cache, frames) for frames in sizes.memory_frames)
    split = train_split(small)
    seconds["synthetic sets"] = lap()

    say("1/6 input pipeline: tf.data against the DenseDepth-style loader")
    results["pipeline"] = measure_pipeline(split, sizes, depth_scale)
    say("1/6 input pipeline: where a sample's time goes")
    results["pipeline"]["profile"] = measure_pipeline_profile(small, results["pipeline"], sizes)
    seconds["pipeline"] = lap()
    say("2/6 memory: peak RSS of one epoch in fresh processes")
    results["memory"] = measure_memory(small, large, sizes)
    seconds["memory"] = lap()

    results["training"], nets = {}, {}
    for kind in MODEL_KINDS:
        say(f"3/6 training speed: {kind}")
        results["training"][kind], built = measure_training(kind, split, sizes, depth_scale)
        nets[kind] = built[KERAS_DEFAULTS.name][0]
        if kind == "unet":
            say("3/6 does training wait for data? (the UNet in its fastest configuration)")
            results["stall"] = measure_stall(*built[results["training"][kind]["fastest"]], split, sizes, depth_scale)
        del built
    seconds["training"] = lap()

    photos, results["inference"] = test_photos(small, sizes), {}
    for kind, net in nets.items():
        say(f"4/6 inference: {kind}")
        # A trained model's start (mean-depth output), so the depth maps compared are not all clipped to one limit.
        train.init_output_bias(net, data.make_dataset(split, batch_size=sizes.batch_size, input_hw=sizes.input_hw,
                                                      target_hw=net.output_shape[1:3], depth_scale=depth_scale), batches=2)
        results["inference"][kind] = measure_inference(net, photos, sizes, depth_scale)
    seconds["inference"] = lap()

    say("5/6 distance to the limit: FLOPs and the machine's peak")
    results["limit"] = {"flops": {kind: forward_flops(net) for kind, net in nets.items()}, "peak": measure_peak(sizes)}
    del nets
    seconds["limit"] = lap()

    if not args.skip_quality:
        say("6/6 quality per minute of CPU training")
        results["quality"] = measure_quality(quality_data(args.quality_data, cache, sizes), Path(args.work), sizes)
        seconds["quality"] = lap()

    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    report = {**headline(results), "definitions": DEFINITIONS, **results,
              "settings": {"mode": mode, **dataclasses.asdict(sizes)}}
    report["goals"] = goals(report)
    report["duration_s"] = {"total": time.perf_counter() - started, **seconds}
    report["markdown"] = markdown(report)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(report["markdown"])
    say(f"wrote {out} in {report['duration_s']['total'] / 60:.1f} min")
    return report


if __name__ == "__main__":
    main(parse_args())
