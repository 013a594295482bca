"""The input pipeline against the DenseDepth-style loader: throughput, where a sample's CPU time goes, and
peak memory as the dataset grows.

Both loaders are consumed by Keras's own loop, model.predict on a `sink_model` that only averages each
image: Keras documents that a PyDataset's workers are used only when fit, evaluate or predict iterate it
(iterating it by hand runs no workers), and keras.utils exports nothing else that runs them. So the
baseline runs exactly as a user's fit would run it, and tf.data goes through the same loop.
"""
from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import resource
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import data
import decode
from augment import Augment, apply_colour, colour_draws, flip
from depth import DepthScale
from layouts import Split

from .baseline import (DenseDepthLoader, augment_numpy, pil_depth_m, pil_rgb, skimage_rgb, skimage_target,
                       zip_in_ram)
from .common import (BASELINE_LOADER, BASELINE_WORKERS, GOALS, TFDATA, BatchClock, Sizes, interleaved, ratio_summary,
                     summary, train_split)


# ---------------------------------------------------------------------------
# Consuming batches as Keras does
# ---------------------------------------------------------------------------


def sink_model(input_hw) -> keras.Model:
    """rgb [B, *input_hw, 3] -> each image's mean colour [B, 3]: next to nothing, so predict's time on it is
    the time to get the batches."""
    rgb = keras.Input([*input_hw, 3], name="rgb")
    return keras.Model(rgb, keras.layers.GlobalAveragePooling2D(name="mean_colour")(rgb), name="sink")


def consume(sink: keras.Model, batches, steps: int | None, callbacks=()) -> None:
    """Run sink.predict over `steps` batches of `batches` (a tf.data.Dataset or a PyDataset; None: one epoch)."""
    sink.predict(batches, steps=steps, verbose=0, callbacks=list(callbacks))


def batches_per_s(sink: keras.Model, batches, steps: int, warmup_batches: int) -> float:
    """Batches per second of consume(sink, batches, steps) after its first warmup_batches."""
    clock = BatchClock(warmup_batches)
    consume(sink, batches, steps, [clock])
    return clock.batches_per_s()


# ---------------------------------------------------------------------------
# 1. Throughput
# ---------------------------------------------------------------------------

# What train.py's loop reads (loop.distributed_dataset): uint8 RGB, the colour change applied by the train step.
TRAIN_FEED = dict(training=True, uint8_rgb=True)


def measure_pipeline(split: Split, sizes: Sizes, depth_scale: DepthScale) -> dict:
    """data.make_dataset (TRAIN_FEED) against DenseDepthLoader on BASELINE_WORKERS threads: samples per second,
    each run a fresh model.predict over sizes.pipeline_batches batches after its warm-up batches."""
    shapes = dict(batch_size=sizes.batch_size, input_hw=sizes.input_hw, target_hw=sizes.input_hw, depth_scale=depth_scale)
    loader = DenseDepthLoader(split, **shapes, workers=BASELINE_WORKERS)
    warmups = {TFDATA: sizes.pipeline_warmup_batches, BASELINE_LOADER: 1}
    if len(loader) < warmups[BASELINE_LOADER] + sizes.pipeline_batches:
        raise ValueError(f"the loader's epoch has {len(loader)} batches, fewer than the "
                         f"{warmups[BASELINE_LOADER] + sizes.pipeline_batches} a run reads")
    batches = {TFDATA: data.make_dataset(split, **TRAIN_FEED, **shapes).repeat(), BASELINE_LOADER: loader}
    sink = sink_model(sizes.input_hw)

    def samples_per_s(name: str) -> float:
        steps = warmups[name] + sizes.pipeline_batches
        return sizes.batch_size * batches_per_s(sink, batches[name], steps, warmups[name])

    runs = interleaved({name: lambda name=name: samples_per_s(name) for name in batches}, sizes.repeats)
    return {
        "samples_per_s": {name: summary(values, "samples/s") for name, values in runs.items()},
        "speedup": ratio_summary(runs[TFDATA], runs[BASELINE_LOADER]),
        "samples_per_run": sizes.pipeline_batches * sizes.batch_size,
        "note": f"each run is a fresh model.predict of a sink model (the batches' mean colour) that discards its "
                f"first batches (tf.data: {warmups[TFDATA]}, the PyDataset: {warmups[BASELINE_LOADER]}); the PyDataset "
                f"runs on Keras's own {BASELINE_WORKERS} worker threads, as fit runs it",
    }


# ---------------------------------------------------------------------------
# 1b. Where a sample's time goes
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


def tfdata_stages(split: Split, hw, depth_scale: DepthScale, rows: list[int]) -> dict:
    """name -> (function, the arguments of each call) for each stage of data.make_dataset (training=True), in order;
    every TensorFlow stage is the graph tf.data runs (a tf.function), fed the previous stage's outputs."""
    read = decode.read_frames(split, strict=False)
    blobs = [read(np.asarray([row]))[1:] for row in rows]  # (rgb [1], depth [1], raw hw [1, 2], orientation [1])
    rgb_blobs = [(tf.constant(rgb[0]), tf.constant(raw_hw[0]), tf.constant(turn[0])) for rgb, _, raw_hw, turn in blobs]
    depth_blobs = [(tf.constant(depth[0]), tf.constant(raw_hw[0])) for _, depth, raw_hw, _ in blobs]
    graph = functools.partial(tf.function, autograph=False)  # as tf.data traces the pipeline's functions (decode.py)
    decode_rgb = graph(lambda blob, raw_hw, turn: decode.decode_rgb(blob, raw_hw, split.rgb_format, hw, turn))
    decode_depth = graph(lambda blob, raw_hw: decode.decode_depth(blob, raw_hw, split.depth_codec))
    decoded = [{"rgb": decode_rgb(*r), "depth": decode_depth(*d)} for r, d in zip(rgb_blobs, depth_blobs)]
    example = graph(lambda rgb, depth, seed: uint8_example(data.to_example({"rgb": rgb, "depth": depth}, hw, hw,
                                                                           depth_scale, seed)))
    seeds = [tf.constant([row, 1], tf.int64) for row in rows]
    examples = [example(frame["rgb"], frame["depth"], seed) for frame, seed in zip(decoded, seeds)]
    augment = graph(lambda rgb, y, seed: (*flip(rgb, y, seed, Augment()), colour_draws(seed, Augment())))
    return {
        f"read bytes and check them (Python, {decode.READ_CHUNK} frames per call)":
            (read, [(np.asarray(rows[i:i + decode.READ_CHUNK]),) for i in range(0, len(rows), decode.READ_CHUNK)]),
        "decode JPEG at the input's scale": (decode_rgb, rgb_blobs),
        "decode depth PNG": (decode_depth, depth_blobs),
        "crop, resize RGB (to uint8) and depth, encode the target": (example, [(f["rgb"], f["depth"], seed)
                                                                           for f, seed in zip(decoded, seeds)]),
        "flip, draw the colour change": (augment, [(*ex, seed) for ex, seed in zip(examples, seeds)]),
    }


def uint8_example(example):
    """(rgb float [0, 1], y_true) -> (rgb uint8, y_true), as data.make_dataset keeps it for the train step."""
    return tf.cast(tf.round(example[0] * 255.0), tf.uint8), example[1]


def step_colour_ms_per_sample(hw, batch_size: int, repeats: int) -> dict:
    """summary() of the ms per sample of augment.apply_colour on a batch (the colour change the train step applies,
    on the accelerator when there is one: it is not part of the CPU pipeline's cost)."""
    rgb = tf.constant(np.random.default_rng(0).integers(0, 256, (batch_size, *hw, 3), np.uint8))
    draws = tf.stack([colour_draws(tf.constant([k, 1], tf.int64), Augment()) for k in range(batch_size)])
    return ms_per_sample(tf.function(apply_colour, autograph=False), [(rgb, draws)], batch_size, repeats)


def densedepth_stages(split: Split, hw, depth_scale: DepthScale, rows: list[int]) -> dict:
    """name -> (function, the arguments of each call) for each stage of DenseDepthLoader.example, in order."""
    blobs = [split.reader(split.keys[row]) for row in rows]
    rgbs = [pil_rgb(rgb) for rgb, _, _ in blobs]
    depths = [pil_depth_m(depth, split.depth_codec) for _, depth, _ in blobs]
    small = [(skimage_rgb(rgb, hw), skimage_target(depth, hw, depth_scale)) for rgb, depth in zip(rgbs, depths)]
    return {
        "read bytes (Python)": (lambda row: split.reader(split.keys[row]), [(row,) for row in rows]),
        "decode JPEG (PIL)": (pil_rgb, [(rgb,) for rgb, _, _ in blobs]),
        "decode depth PNG (PIL)": (lambda blob: pil_depth_m(blob, split.depth_codec), [(d,) for _, d, _ in blobs]),
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
    split, depth_scale = train_split(dataset_dir), DepthScale()
    rows = list(range(min(frames, len(split))))
    stages = {TFDATA: tfdata_stages(split, hw, depth_scale, rows),
              BASELINE_LOADER: densedepth_stages(split, hw, depth_scale, rows)}
    profile = {loader: {name: ms_per_sample(fn, calls, len(rows), repeats) for name, (fn, calls) in named.items()}
               for loader, named in stages.items()}
    return profile, step_colour_ms_per_sample(hw, 8, repeats)


def reading_rate(split: Split, chunk: int, samples: int) -> float:
    """Frames per second of decode.blobs (the reading stage alone: Python reads through tf.numpy_function) with
    `chunk` frames per Python call, on all cores, after 2 * chunk frames of warm-up."""
    iterator = iter(decode.blobs(split, chunk=chunk).repeat().prefetch(tf.data.AUTOTUNE))
    for _ in range(2 * chunk):
        next(iterator)
    start = time.perf_counter()
    for _ in range(samples):
        next(iterator)
    return samples / (time.perf_counter() - start)


def measure_pipeline_profile(dataset_dir: Path, pipeline: dict, sizes: Sizes) -> dict:
    """Where a sample's time goes, for both loaders: each stage's ms per sample on one core (in a fresh process),
    their total, and what the total allows on this machine's cores next to the rate measured with all of them;
    then the reading stage alone at one frame and at decode.READ_CHUNK frames per Python call. The colour change
    the train step applies is timed apart (step_colour_ms_per_sample): on a GPU it leaves the CPU."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        stages, step_colour = pool.apply(stage_profile, (str(dataset_dir), sizes.input_hw, sizes.profile_frames,
                                                         sizes.repeats))
    cores = len(os.sched_getaffinity(0))
    totals = {loader: sum(figure["median"] for figure in named.values()) for loader, named in stages.items()}
    split = train_split(dataset_dir)
    one, chunked = "1 frame per call", f"{decode.READ_CHUNK} frames per call"
    reading = interleaved({name: lambda chunk=chunk: reading_rate(split, chunk, sizes.pipeline_batches * sizes.batch_size)
                           for name, chunk in ((one, 1), (chunked, decode.READ_CHUNK))}, sizes.repeats)
    return {
        "stages_ms_per_sample": stages,
        "total_ms_per_sample": totals,
        "train_step_colour_ms_per_sample": step_colour,
        "cores": cores,
        # if every core did nothing but this loader's stages
        "ceiling_samples_per_s": {loader: cores * 1e3 / total for loader, total in totals.items()},
        "measured_samples_per_s": {loader: figure["median"] for loader, figure in pipeline["samples_per_s"].items()},
        # the CPU cost per sample tf.data would need for the 10x goal, the baseline's being what it is
        "goal_ms_per_sample": totals[BASELINE_LOADER] / GOALS["pipeline_speedup"][1],
        "reading_stage_samples_per_s": {name: summary(values, "samples/s") for name, values in reading.items()},
        "reading_stage_speedup": ratio_summary(reading[chunked], reading[one]),
    }


# ---------------------------------------------------------------------------
# 2. Memory: peak RSS of one epoch, in a fresh process each
# ---------------------------------------------------------------------------

ZIP_IN_RAM = "DenseDepth (zip in RAM)"
MEMORY_LOADERS = (TFDATA, ZIP_IN_RAM)


def memory_batches(loader: str, split: Split, batch_size: int, hw):
    """What loader `loader` of MEMORY_LOADERS hands Keras: one tf.data epoch, or DenseDepthLoader over the split's
    zip read into RAM (so building it is part of its peak)."""
    if loader == TFDATA:
        return data.make_dataset(split, batch_size=batch_size, input_hw=hw, target_hw=hw, **TRAIN_FEED)
    return DenseDepthLoader(zip_in_ram(split), batch_size=batch_size, input_hw=hw, target_hw=hw,
                            depth_scale=DepthScale(), workers=BASELINE_WORKERS)


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
    """Peak RSS in MiB of this process while Keras's predict loop reads `batches` batches (None: one epoch) of
    `loader` over dataset_dir's train split: {"epoch": the peak while reading, "process": ru_maxrss, which also
    covers TensorFlow's start-up}. Meant for a fresh process."""
    split, sink = train_split(dataset_dir), sink_model(hw)
    reset_peak_rss()
    consume(sink, memory_batches(loader, split, batch_size, hw), batches)
    return {"epoch": peak_rss_since_reset_mib(), "process": peak_rss_mib()}


def measure_memory(small: Path, large: Path, sizes: Sizes) -> dict:
    """Peak RSS of an epoch over the small and the large set, each in a freshly spawned process: tf.data (a
    whole epoch) and DenseDepth's loader (which holds the zip in RAM, so densedepth_memory_batches show its growth).

    Two processes run at a time: peak memory does not depend on timing, so there is no warm-up either.
    """
    paths, frames = {"small": small, "large": large}, dict(zip(("small", "large"), sizes.memory_frames))
    batches = {TFDATA: None, ZIP_IN_RAM: sizes.densedepth_memory_batches}
    jobs = list(itertools.product(MEMORY_LOADERS, paths))
    runs = {job: [] for job in jobs}
    with multiprocessing.get_context("spawn").Pool(2, maxtasksperchild=1) as pool:
        for _ in range(sizes.memory_repeats):
            arguments = [(loader, str(paths[size]), sizes.batch_size, sizes.input_hw, batches[loader])
                         for loader, size in jobs]
            for job, rss in zip(jobs, pool.starmap(epoch_peak_rss, arguments, chunksize=1)):
                runs[job].append(rss)

    def figures(loader, key):
        return {f"{frames[size]} frames": summary([r[key] for r in runs[loader, size]], "MiB") for size in paths}

    def growth(loader, key):
        return ratio_summary([r[key] for r in runs[loader, "large"]], [r[key] for r in runs[loader, "small"]])

    return {
        loader: {
            "frames": frames,
            "batches_read": "one epoch" if batches[loader] is None else batches[loader],
            "epoch_peak_rss_mib": figures(loader, "epoch"),
            "process_peak_rss_mib": figures(loader, "process"),
            "growth": growth(loader, "epoch"),
            "process_growth": growth(loader, "process"),
        }
        for loader in MEMORY_LOADERS
    }
