"""python -m benchmarks: run every measure, write the JSON, print the Markdown table (see the package docstring)."""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import keras

import data
import train
from depth import DepthScale

from . import __doc__ as PACKAGE_DOC
from .common import (KERAS_DEFAULTS, MODEL_KINDS, SIZES, benchmark_parser, check_paths, command_line, say, stopwatch,
                     synthetic_dir, train_split, write_results)
from .inference import forward_flops, measure_inference, measure_peak, photographs
from .multiworker import measure_multiworker
from .pipeline import measure_memory, measure_pipeline, measure_pipeline_profile
from .quality import measure_quality, quality_data
from .report import DEFINITIONS, goals, headline, machine, markdown
from .training import measure_stall, measure_training


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser("python -m benchmarks", PACKAGE_DOC,
                              "tiny sizes, few repeats, a 0.1-minute quality run: every code path in a few minutes",
                              "benchmarks/results.json", "folder for the quality runs' models and evaluations")
    parser.add_argument("--skip-quality", action="store_true",
                        help="leave out the quality-per-minute runs (about 18 minutes of the full run)")
    parser.add_argument("--quality-data", default=None,
                        help=f"the set the quality runs train and evaluate on (default: the demo's, {train.DEFAULT_DATA}, "
                             "written on first use; with --quick, the cached 64-frame set)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    """Run every measure, write the JSON, print the Markdown table; returns the results."""
    check_paths(args)
    lap, started = stopwatch(), time.perf_counter()
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    keras.utils.set_random_seed(0)
    depth_scale = DepthScale()
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
        nets[kind] = built[KERAS_DEFAULTS.name][0].net
        if kind == "unet":
            say("3/6 does training wait for data? (the UNet in its fastest configuration)")
            results["stall"] = measure_stall(*built[results["training"][kind]["fastest"]], split, sizes, depth_scale)
        del built
    seconds["training"] = lap()
    say("3/6 what the collective costs: two localhost workers against one process")
    results["multiworker"] = measure_multiworker(str(small), sizes)
    seconds["multiworker"] = lap()

    photos, results["inference"] = photographs(small, sizes), {}
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
    out = write_results(report, args.json)
    say(f"wrote {out} in {report['duration_s']['total'] / 60:.1f} min")
    return report


if __name__ == "__main__":
    sys.exit(command_line(main, parse_args))
