"""Training speed of train.py's own step against its defaults, and whether training waits for data.

What is timed is the step train.py runs: loop.StepFunctions.train (one compiled call of --steps-per-execution steps) on
the default strategy, with the model built and compiled by train.py's own functions and the input from its own
distributed pipeline (train.distributed_datasets), so the figures are those of `python train.py` with the same
flags. Keras's Model.fit is not timed: train.py does not use it (loop.py says why)."""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import tensorflow as tf

import loop
import train
from depth import DepthScale
from layouts import Split
from loss import logs_from_totals

from .common import (KERAS_DEFAULTS, MIXED_PRECISION, Sizes, TrainConfig, interleaved, ratio_summary, say,
                     summary)

SAME_LOSS_RTOL = 1e-3  # a configuration is correct when its warm-up loss matches the defaults' to this (relative)


def train_args(kind: str, sizes: Sizes, config: TrainConfig) -> argparse.Namespace:
    """train.py's arguments for model `kind` at the benchmark's size, compiled as `config` says."""
    return train.parse_args(["--model", kind, "--encoder", sizes.transfer_encoder, "--encoder-weights", "none",
                             "--input-size", *map(str, sizes.input_hw), "--bs", str(sizes.batch_size), *config.flags()])


def train_steps(args: argparse.Namespace, depth_scale: DepthScale) -> loop.StepFunctions:
    """The step functions train.py trains `args`'s model with on one device: built and compiled by train.py's
    functions under the default strategy (XLA as --jit-compile says); the model is its `.net`."""
    strategy = tf.distribute.get_strategy()
    train.set_precision(args.mixed_precision)
    with strategy.scope():
        net = train.build_net(args.model, input_hw=args.input_size, depth_scale=depth_scale,
                              base_filters=args.base_filters, encoder=args.encoder,
                              encoder_weights=args.encoder_weights, decoder_width=args.decoder_width,
                              preset=args.preset)
        train.compile_net(net, lr=args.lr, ema_momentum=args.ema_momentum)
    steps = loop.StepFunctions(net, strategy, depth_scale, args.theta, args.jit_compile,
                                steps_per_call=args.steps_per_execution)
    train.set_precision(False)
    return steps


def real_pipeline(steps: loop.StepFunctions, args: argparse.Namespace, split: Split, depth_scale: DepthScale):
    """train.py's distributed training input of `split` for `args` (train.distributed_datasets), from step 0."""
    options = train.example_options(input_hw=args.input_size, target_hw=steps.net.output_shape[1:3],
                                    depth_scale=depth_scale, seed=args.seed, strict=args.strict,
                                    augment=not args.no_augment)
    return train.distributed_datasets(steps.strategy, split, None, batch_size=args.bs, skip_steps=0, val_steps=None,
                                      **options)[0]


def in_memory(steps: loop.StepFunctions, batch):
    """One batch (x, y_true) repeated for ever, distributed as train.py's input is: the step without the pipeline."""
    return steps.strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch).repeat())


def train_images_per_s(steps: loop.StepFunctions, dataset, timed_steps: int, steps_per_call: int, batch_size: int) -> float:
    """Images per second of loop.StepFunctions.train on a fresh iterator over the distributed `dataset`: one warm-up call
    (untimed: the pipeline's first reads), then whole calls of steps_per_call steps, at least timed_steps steps."""
    iterator = iter(dataset)
    steps.train(iterator, steps_per_call, False)
    calls = -(-timed_steps // steps_per_call)
    start = time.perf_counter()
    for _ in range(calls):
        steps.train(iterator, steps_per_call, False)  # returns numpy values: the call has finished
    return calls * steps_per_call * batch_size / (time.perf_counter() - start)


def warmup_loss(steps: loop.StepFunctions, dataset, n_steps: int, steps_per_call: int) -> float:
    """The training loss train.py would log over the first n_steps steps (their totals pooled,
    loss.logs_from_totals), trained in calls of steps_per_call steps; this also traces and compiles the step."""
    iterator, totals = iter(dataset), {}
    for _ in range(n_steps // steps_per_call):
        totals = loop.add(totals, steps.train(iterator, steps_per_call, False))
    totals.pop(loop.STOP)
    return logs_from_totals(totals, steps.theta)["loss"]


def train_candidates(sizes: Sizes) -> tuple[TrainConfig, ...]:
    """The configurations tried against the defaults; mixed precision only where a GPU exists."""
    return sizes.train_candidates + ((MIXED_PRECISION,) if tf.config.list_physical_devices("GPU") else ())


def build_configs(kind: str, configs, sizes: Sizes, depth_scale: DepthScale) -> dict:
    """{config name: (steps, args, config)} for each configuration, every model starting from the same weights."""
    built = {}
    for config in configs:
        say(f"training {kind}: building with {config.name}")
        args = train_args(kind, sizes, config)
        built[config.name] = (train_steps(args, depth_scale), args, config)
    initial = built[KERAS_DEFAULTS.name][0].net.get_weights()
    for steps, _, _ in built.values():
        steps.net.set_weights(initial)
    return built


def measure_training(kind: str, split: Split, sizes: Sizes, depth_scale: DepthScale) -> tuple[dict, dict]:
    """Images per second of train.py's step, its defaults against each candidate configuration, all from the
    same weights on the same in-memory batch. A candidate counts as correct when its loss over the warm-up steps
    matches the defaults' to SAME_LOSS_RTOL. Returns (results, {config name: (steps, args)})."""
    configs = (KERAS_DEFAULTS, *train_candidates(sizes))
    built = build_configs(kind, configs, sizes, depth_scale)
    defaults, args = built[KERAS_DEFAULTS.name][:2]
    real = real_pipeline(defaults, args, split, depth_scale)
    memory = in_memory(defaults, next(iter(real)))
    check_steps = int(np.lcm.reduce([config.steps_per_execution for config in configs]))
    losses = {}
    for name, (steps, _, config) in built.items():
        start = time.perf_counter()
        losses[name] = warmup_loss(steps, memory, check_steps, config.steps_per_execution)
        say(f"training {kind}: {name}: warm-up loss {losses[name]:.5f} in {time.perf_counter() - start:.1f} s")
    correct = {name: bool(np.isclose(loss, losses[KERAS_DEFAULTS.name], rtol=SAME_LOSS_RTOL))
               for name, loss in losses.items()}
    runs = interleaved({
        name: lambda steps=steps, config=config: train_images_per_s(steps, memory, sizes.train_steps,
                                                                   config.steps_per_execution, sizes.batch_size)
        for name, (steps, _, config) in built.items()
    }, sizes.repeats, warmups=0)  # the warm-up loss runs were the warm-up
    speedups = {name: ratio_summary(runs[name], runs[KERAS_DEFAULTS.name]) for name in built}
    fastest = max((name for name in built if correct[name]), key=lambda name: speedups[name]["median"])
    say(f"training {kind}: fastest correct configuration: {fastest} ({speedups[fastest]['median']:.2f}x)")
    results = {
        "model": defaults.net.name,
        "parameters": defaults.net.count_params(),
        "input_hw": list(sizes.input_hw), "batch_size": sizes.batch_size,
        "step": "loop.StepFunctions.train",  # what was timed: train.py's step, not Keras's Model.fit
        "images_per_s": {name: summary(values, "images/s") for name, values in runs.items()},
        "speedup_vs_defaults": speedups,
        "warmup_loss": losses, "correct": correct,
        "fastest": fastest,
        "speedup": speedups[fastest],
        "configs": {name: dataclasses.asdict(config) for name, (_, _, config) in built.items()},
    }
    return results, {name: (steps, args) for name, (steps, args, _) in built.items()}


def measure_stall(steps: loop.StepFunctions, args: argparse.Namespace, split: Split, sizes: Sizes,
                  depth_scale: DepthScale) -> dict:
    """Training-step time with train.py's real input pipeline (train.distributed_datasets) over the time with one
    of its batches already in memory (> 1: training waits for data or the pipeline slows the step). steps: the
    configuration being trained (measure_training's), args its train.py arguments."""
    real = real_pipeline(steps, args, split, depth_scale)
    datasets = {"real pipeline": real, "batch in memory": in_memory(steps, next(iter(real)))}
    runs = interleaved({
        name: lambda dataset=dataset: train_images_per_s(steps, dataset, sizes.train_steps, args.steps_per_execution,
                                                         sizes.batch_size)
        for name, dataset in datasets.items()
    }, sizes.repeats)
    return {
        "model": steps.net.name,
        "step": "loop.StepFunctions.train",
        "images_per_s": {name: summary(values, "images/s") for name, values in runs.items()},
        # step time with the pipeline / step time in memory = images/s in memory / images/s with the pipeline
        "stall": ratio_summary(runs["batch in memory"], runs["real pipeline"]),
    }
