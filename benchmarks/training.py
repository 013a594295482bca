"""Training speed against Keras's defaults, and whether training waits for data. Models are built and
compiled by train.py's own functions, so the figures are those of `python train.py` with the same flags."""
from __future__ import annotations

import argparse
import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

import data
import train
from depth import DepthScale
from layouts import Split

from .common import (KERAS_DEFAULTS, MIXED_PRECISION, BatchClock, Sizes, TrainConfig, interleaved, ratio_summary,
                     say, summary)

SAME_LOSS_RTOL = 1e-3  # a configuration is correct when its warm-up loss matches the defaults' to this (relative)


def train_args(kind: str, sizes: Sizes, config: TrainConfig) -> argparse.Namespace:
    """train.py's arguments for model `kind` at the benchmark's size, compiled as `config` says."""
    return train.parse_args(["--model", kind, "--encoder", sizes.transfer_encoder, "--encoder-weights", "none",
                             "--input-size", *map(str, sizes.input_hw), "--bs", str(sizes.batch_size), *config.flags()])


def compiled_net(args: argparse.Namespace, depth_scale: DepthScale) -> keras.Model:
    """The model train.py trains for `args`, compiled as train.py compiles it."""
    train.set_precision(args.mixed_precision)
    net = train.compile_net(train.build_net(args, depth_scale), args, depth_scale)
    train.set_precision(False)
    return net


def train_images_per_s(net: keras.Model, dataset: tf.data.Dataset, steps: int, steps_per_execution: int,
                       batch_size: int) -> float:
    """Images per second of `steps` training steps of net.fit on `dataset`, after one warm-up execution."""
    clock = BatchClock(warmup_batches=steps_per_execution)
    timed = -(-steps // steps_per_execution) * steps_per_execution  # whole executions
    net.fit(dataset, epochs=1, steps_per_epoch=steps_per_execution + timed, verbose=0, callbacks=[clock])
    return clock.batches_per_s() * batch_size


def warmup_loss(net: keras.Model, dataset: tf.data.Dataset, steps: int) -> float:
    """Mean training loss over the first `steps` steps (this also traces and compiles the step)."""
    return float(net.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0).history["loss"][-1])


def train_candidates(sizes: Sizes) -> tuple[TrainConfig, ...]:
    """The configurations tried against Keras's defaults; mixed precision only where a GPU exists."""
    return sizes.train_candidates + ((MIXED_PRECISION,) if tf.config.list_physical_devices("GPU") else ())


def build_configs(kind: str, configs, sizes: Sizes, depth_scale: DepthScale) -> dict:
    """{config name: (net, args, config)} for each configuration, every net starting from the same weights."""
    built = {}
    for config in configs:
        say(f"training {kind}: building with {config.name}")
        args = train_args(kind, sizes, config)
        built[config.name] = (compiled_net(args, depth_scale), args, config)
    initial = built[KERAS_DEFAULTS.name][0].get_weights()
    for net, _, _ in built.values():
        net.set_weights(initial)
    return built


def measure_training(kind: str, split: Split, sizes: Sizes, depth_scale: DepthScale) -> tuple[dict, dict]:
    """Images per second of a training step, Keras defaults against each candidate configuration, all from the
    same weights on the same in-memory batch. A candidate counts as correct when its loss over the warm-up steps
    matches the defaults' to SAME_LOSS_RTOL. Returns (results, {config name: (net, args)})."""
    configs = (KERAS_DEFAULTS, *train_candidates(sizes))
    built = build_configs(kind, configs, sizes, depth_scale)
    defaults = built[KERAS_DEFAULTS.name][0]
    batch = next(iter(data.make_dataset(split, batch_size=sizes.batch_size, input_hw=sizes.input_hw,
                                        target_hw=defaults.output_shape[1:3], depth_scale=depth_scale, training=True)))
    in_memory = tf.data.Dataset.from_tensors(batch).repeat()
    check_steps = int(np.lcm.reduce([config.steps_per_execution for config in configs]))
    losses = {}
    for name, (net, _, _) in built.items():
        start = time.perf_counter()
        losses[name] = warmup_loss(net, in_memory, check_steps)
        say(f"training {kind}: {name}: warm-up loss {losses[name]:.5f} in {time.perf_counter() - start:.1f} s")
    correct = {name: bool(np.isclose(loss, losses[KERAS_DEFAULTS.name], rtol=SAME_LOSS_RTOL))
               for name, loss in losses.items()}
    runs = interleaved({
        name: lambda net=net, config=config: train_images_per_s(net, in_memory, sizes.train_steps,
                                                                 config.steps_per_execution, sizes.batch_size)
        for name, (net, _, config) in built.items()
    }, sizes.repeats, warmups=0)  # the warm-up loss runs were the warm-up
    speedups = {name: ratio_summary(runs[name], runs[KERAS_DEFAULTS.name]) for name in built}
    fastest = max((name for name in built if correct[name]), key=lambda name: speedups[name]["median"])
    say(f"training {kind}: fastest correct configuration: {fastest} ({speedups[fastest]['median']:.2f}x)")
    results = {
        "model": defaults.name,
        "parameters": defaults.count_params(),
        "input_hw": list(sizes.input_hw), "batch_size": sizes.batch_size,
        "images_per_s": {name: summary(values, "images/s") for name, values in runs.items()},
        "speedup_vs_defaults": speedups,
        "warmup_loss": losses, "correct": correct,
        "fastest": fastest,
        "speedup": speedups[fastest],
        "configs": {name: dataclasses.asdict(config) for name, (_, _, config) in built.items()},
    }
    return results, {name: (net, args) for name, (net, args, _) in built.items()}


def measure_stall(net: keras.Model, args: argparse.Namespace, split: Split, sizes: Sizes,
                  depth_scale: DepthScale) -> dict:
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
