"""What every measure shares: the sizes of a run, the goals, taking turns, summaries and clocks."""
from __future__ import annotations

import argparse
import dataclasses
import json
import operator
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

import nyu
import synth
from cli import user_error
from layouts import DataError, Split, open_source

ROOT = Path(__file__).resolve().parents[1]  # the project root: the scripts the quality runs start live there


# ---------------------------------------------------------------------------
# What to measure, at which size
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One way to compile train.py's step (its speed flags: --jit-compile, --steps-per-execution, --mixed-precision)."""

    name: str
    jit_compile: bool = False
    steps_per_execution: int = 1
    mixed_precision: bool = False

    def flags(self) -> list[str]:
        """train.py's command-line flags for this configuration."""
        return [*(["--jit-compile"] if self.jit_compile else []), "--steps-per-execution", str(self.steps_per_execution),
                *(["--mixed-precision"] if self.mixed_precision else [])]


# train.py's defaults, which are Keras's compile defaults (no XLA, one step per call); the name keys the results
KERAS_DEFAULTS = TrainConfig("keras defaults")
MIXED_PRECISION = TrainConfig("mixed precision", mixed_precision=True)  # a candidate only where a GPU exists


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big and how often: one row of SIZES. Sizes in pixels (height, width), times in minutes."""

    repeats: int  # timed runs per figure, after one warm-up
    input_hw: tuple[int, int]  # network input; the UNet's target has the same size
    batch_size: int
    pipeline_batches: int  # batches timed per pipeline run: the small set's epoch minus the loader's warm-up batch
    pipeline_warmup_batches: int  # tf.data's batches discarded from each fresh run before timing
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
        repeats=5, input_hw=nyu.INPUT_HW, batch_size=4, pipeline_batches=49, pipeline_warmup_batches=4,
        profile_frames=32, memory_frames=(200, 2000), memory_repeats=5, densedepth_memory_batches=10, train_steps=4,
        train_candidates=(TrainConfig("XLA", jit_compile=True), TrainConfig("steps_per_execution=4", steps_per_execution=4)),
        transfer_encoder="densenet169", infer_hw=nyu.FRAME_HW, infer_images=8, infer_batches=(1, 8),
        matmul_n=4096, conv_shape=(8, 128, 128, 128), quality_minutes=(2.0, 5.0, 10.0), quality_frames=None,
        quality_input_hw=nyu.INPUT_HW, quality_eval_frames=None, quality_baseline_frames=200,
    ),
    # Every code path on tiny sizes; the transfer model on VGG16, which compiles in seconds.
    "quick": Sizes(
        repeats=3, input_hw=(48, 64), batch_size=4, pipeline_batches=3, pipeline_warmup_batches=1, profile_frames=8,
        memory_frames=(16, 64), memory_repeats=2, densedepth_memory_batches=2, train_steps=2,
        train_candidates=(TrainConfig("steps_per_execution=2", steps_per_execution=2),),  # XLA compiles too long here
        transfer_encoder="vgg16", infer_hw=(96, 128), infer_images=4, infer_batches=(1, 4),
        matmul_n=512, conv_shape=(2, 32, 32, 32), quality_minutes=(0.1,), quality_frames=64,
        quality_input_hw=(48, 64), quality_eval_frames=4, quality_baseline_frames=8,
    ),
}

MODEL_KINDS = ("unet", "transfer")  # the benchmarked architectures (depth-anything needs a KerasHub preset and a square input)
BASELINE_WORKERS = 2  # PyDataset(workers=2): the threads Keras builds the baseline's batches on, one per core here
TEST_FRAMES = 8  # test frames in each cached synthetic set: the photographs of the inference measure
BASELINE_LOADER = "DenseDepth-style PyDataset"  # the pipeline's baseline, by the name every result uses
TFDATA = "tf.data"
PLAIN_PREDICT = "model.predict"  # the inference baseline: what a user writes with Keras alone

# top-level key -> (comparison, bound): the goals
GOALS = {"pipeline_speedup": (">=", 10.0), "pipeline_stall": ("<=", 1.05), "pipeline_memory_growth": ("<=", 1.10)}
COMPARISONS = {">=": operator.ge, "<=": operator.le}


# ---------------------------------------------------------------------------
# Taking turns, and summarising the runs
# ---------------------------------------------------------------------------

def say(message: str) -> None:
    """A time-stamped progress line on stderr (stdout carries only the Markdown table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_results(report: dict, path) -> Path:
    """Write `report` to `path` as indented JSON (its folder made if missing) and print its "markdown" entry on
    stdout; returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(report["markdown"])
    return out


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


def stopwatch():
    """A function returning the seconds since it was last called (or since stopwatch() was)."""
    last = [time.perf_counter()]

    def lap() -> float:
        now = time.perf_counter()
        elapsed, last[0] = now - last[0], now
        return elapsed

    return lap


class BatchClock(keras.callbacks.Callback):
    """Batches per second of a fit or predict call, timed from the end of its first `warmup_batches` batches
    to the end of its last, so start-up (tracing, a loader's first reads) is left out."""

    def __init__(self, warmup_batches: int):
        super().__init__()
        self.warmup_batches = warmup_batches

    def on_train_begin(self, logs=None):
        self.marks = []

    on_predict_begin = on_train_begin

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per execution, `batch` being its last step.
        self.marks.append((batch, time.perf_counter()))

    on_predict_batch_end = on_train_batch_end

    def batches_per_s(self) -> float:
        (first, start) = next(mark for mark in self.marks if mark[0] + 1 >= self.warmup_batches)
        (last, end) = self.marks[-1]
        if last == first:
            raise ValueError(f"no batch was timed: {len(self.marks)} marks, {self.warmup_batches} warm-up batches")
        return (last - first) / (end - start)


# ---------------------------------------------------------------------------
# The synthetic sets, cached between runs
# ---------------------------------------------------------------------------

def synthetic_dir(cache: Path, frames: int) -> Path:
    """cache/synth<frames>: the synthetic NYU-format set of `frames` training frames (written on first use, ~30 ms
    per frame on 2 cores) and TEST_FRAMES test frames."""
    return Path(synth.ensure_synthetic(cache / f"synth{frames}", train=frames, test=TEST_FRAMES))


def train_split(dataset_dir) -> Split:
    """The training split of the dataset at dataset_dir."""
    return open_source(dataset_dir).split("train")


def check_paths(args: argparse.Namespace) -> None:
    """DataError, before any measuring, for a --json, --cache or --work folder that cannot be written or a
    --quality-data (python -m benchmarks) that cannot be read."""
    for flag, folder in (("--json", Path(args.json).parent), ("--cache", Path(args.cache)), ("--work", Path(args.work))):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DataError(f"{flag}: cannot create {folder} ({err.strerror}); choose another") from err
        if not os.access(folder, os.W_OK):
            raise DataError(f"{flag}: {folder} is not writable; choose another")
    if getattr(args, "quality_data", None) is not None:
        open_source(args.quality_data)


def command_line(main, parse_args, argv=None) -> int:
    """A benchmark's command line: main(parse_args(argv)); exit code 0, or 2 with check_paths' one sentence
    (`error: ...` on stderr) for a path that cannot be used."""
    try:
        main(parse_args(argv))
    except DataError as err:
        return user_error(str(err))
    return 0


def benchmark_parser(prog: str, description: str, quick_help: str, json_path: str, work_help: str) -> argparse.ArgumentParser:
    """The flags every benchmark command line shares: --quick, --json (default json_path), --cache and --work
    (default runs/benchmark)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", default=json_path, help=f"where to write the results (default: {json_path})")
    parser.add_argument("--cache", default="data/bench",
                        help="folder of the cached synthetic sets, written on first use (default: data/bench)")
    parser.add_argument("--work", default="runs/benchmark", help=f"{work_help} (default: runs/benchmark)")
    return parser
