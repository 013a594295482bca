"""What the figures were measured on, the issue's headline numbers and goals, and docs/benchmarks.md's Markdown table."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .common import BASELINE_LOADER, BASELINE_WORKERS, COMPARISONS, GOALS, KERAS_DEFAULTS, MODEL_KINDS, PLAIN_PREDICT, TFDATA

# What each top-level number of the JSON is (all medians over the repeats).
DEFINITIONS = {
    "pipeline_speedup": "samples/s of data.make_dataset (training=True) over the DenseDepth-style PyDataset on "
                        f"{BASELINE_WORKERS} worker threads, both consumed by Keras's model.predict (on a model that only averages them)",
    "pipeline_stall": "UNet training-step time with train.py's input pipeline over the time with one batch already "
                      "in memory, in the UNet's fastest configuration (1 = training never waits)",
    "pipeline_memory_growth": "peak RSS while Keras reads one tf.data epoch over the large synthetic set over that "
                              "over the small one (VmHWM reset at the epoch's start, a fresh process each)",
    **{f"train_speedup_{kind}": f"{kind} images/s of train.py's step (loop.StepFunctions.train) in the fastest correct "
                                "configuration over its defaults (Keras's compile defaults: no XLA, one step per call)"
       for kind in MODEL_KINDS},
    **{f"infer_speedup_{kind}": f"{kind} ms per photo of a plain model.predict at batch 1 (photo to metres at the "
                                "network's output size) over the fastest correct path at its best batch size"
       for kind in MODEL_KINDS},
    "peak_fraction_train": "UNet training FLOP/s (a step counted as 3x the forward FLOPs, which TF's profiler "
                           "counts) in its fastest configuration over the machine's measured float32 peak",
    "peak_fraction_infer": "UNet forward FLOP/s on the fastest inference path (end-to-end time) over the machine's "
                           "measured float32 peak",
}


# ---------------------------------------------------------------------------
# The machine
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


# ---------------------------------------------------------------------------
# Headline numbers and goals
# ---------------------------------------------------------------------------

def headline(results: dict) -> dict:
    """The issue's top-level numbers (medians) from the sections' results."""
    training, inference, limit = results["training"], results["inference"], results["limit"]
    unet_flops = limit["flops"]["unet"]["flops_per_image"]
    peak = limit["peak"]["peak_gflop_per_s"] * 1e9
    unet_train = training["unet"]["images_per_s"][training["unet"]["fastest"]]["median"]
    return {
        "pipeline_speedup": results["pipeline"]["speedup"]["median"],
        "pipeline_stall": results["stall"]["stall"]["median"],
        "pipeline_memory_growth": results["memory"][TFDATA]["growth"]["median"],
        **{f"train_speedup_{kind}": training[kind]["speedup"]["median"] for kind in MODEL_KINDS},
        **{f"infer_speedup_{kind}": inference[kind]["speedup"]["median"] for kind in MODEL_KINDS},
        # a training step counted as 3 forward passes (forward, and backward for activations and weights)
        "peak_fraction_train": 3 * unet_flops * unet_train / peak,
        "peak_fraction_infer": unet_flops * inference["unet"]["fastest_images_per_s"]["median"] / peak,
    }


def goals(numbers: dict) -> dict:
    """{key: {goal, met}} for every number the issue sets a goal for (GOALS)."""
    return {key: {"goal": f"{compare} {bound:g}", "met": bool(COMPARISONS[compare](numbers[key], bound))}
            for key, (compare, bound) in GOALS.items()}


# ---------------------------------------------------------------------------
# The Markdown table: one row per measure, (measure, baseline, this project, ratio, goal / notes)
# ---------------------------------------------------------------------------

def spread(figure: dict, digits: int = 2) -> str:
    """'median (min-max)' of a summary() figure."""
    return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}-{figure['max']:.{digits}f})"


def goal_cell(results: dict, key: str) -> str:
    """'>= 10 met' or '>= 10 NOT met' for goal `key`."""
    goal = results["goals"][key]
    return f"{goal['goal']} {'met' if goal['met'] else 'NOT met'}"


def pipeline_rows(results: dict) -> list[tuple]:
    pipe, stall, memory = results["pipeline"], results["stall"], results["memory"]
    rates = pipe["samples_per_s"]
    small, large = (f"{n} frames" for n in results["settings"]["memory_frames"])
    rows = [
        ("Input pipeline, samples/s (2 cores)", f"{BASELINE_LOADER} {spread(rates[BASELINE_LOADER], 1)}",
         f"{TFDATA} {spread(rates[TFDATA], 1)}", f"{spread(pipe['speedup'], 1)}x", goal_cell(results, "pipeline_speedup")),
        (f"Training with the input pipeline ({stall['model']}), images/s",
         f"batch in memory {spread(stall['images_per_s']['batch in memory'])}",
         f"real pipeline {spread(stall['images_per_s']['real pipeline'])}",
         f"{spread(stall['stall'], 3)} (step-time ratio)", goal_cell(results, "pipeline_stall")),
    ]
    for loader, figures in memory.items():
        peaks = figures["epoch_peak_rss_mib"]
        rows.append((f"Peak RSS while reading ({loader}), MiB", f"{small}: {spread(peaks[small], 0)}",
                     f"{large}: {spread(peaks[large], 0)}", f"{spread(figures['growth'], 3)} (growth)",
                     goal_cell(results, "pipeline_memory_growth") if loader == TFDATA else
                     f"reads {figures['batches_read']} batches: its peak is the zip it holds"))
    return rows


def profile_rows(results: dict) -> list[tuple]:
    profile = results["pipeline"]["profile"]
    stages, totals = profile["stages_ms_per_sample"], profile["total_ms_per_sample"]

    def breakdown(loader: str) -> str:
        return " + ".join(f"{name} {figure['median']:.2f}" for name, figure in stages[loader].items()) + \
            f" = **{totals[loader]:.2f}**"

    decode = sum(figure["median"] for name, figure in stages[TFDATA].items() if name.startswith("decode"))
    cores, ceiling, measured = profile["cores"], profile["ceiling_samples_per_s"], profile["measured_samples_per_s"]
    (one, one_rate), (chunked, chunked_rate) = profile["reading_stage_samples_per_s"].items()
    base, ours = BASELINE_LOADER, TFDATA
    return [
        ("Where a sample's CPU time goes, ms on one core", breakdown(base), breakdown(ours),
         f"{totals[base] / totals[ours]:.1f}x less CPU",
         f"10x needs <= {profile['goal_ms_per_sample']:.2f} ms per sample; the two decodes alone take {decode:.2f}"),
        (f"Samples/s if {cores} cores did only this, vs measured", f"{ceiling[base]:.0f} vs {measured[base]:.0f}",
         f"{ceiling[ours]:.0f} vs {measured[ours]:.0f}", "",
         f"measured / ceiling {measured[base] / ceiling[base]:.0%} and {measured[ours] / ceiling[ours]:.0%}: "
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
    plain = f"{PLAIN_PREDICT} @ batch 1"
    for kind in MODEL_KINDS:
        i = results["inference"][kind]
        fastest, ms = i["fastest"], i["ms_per_image"]
        others = "; ".join(f"{name} {spread(figure, 1)}" for name, figure in ms.items() if name not in (plain, fastest))
        rows.append((f"Inference {i['model']}, ms per {i['photo_hw'][1]}x{i['photo_hw'][0]} photo",
                     f"{plain} {spread(ms[plain], 1)}", f"fastest: {fastest} {spread(ms[fastest], 1)}",
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
    if quality is None:  # --skip-quality
        return []
    base = quality["baseline"]
    return [(f"Quality after {row['minutes']:g} min of CPU training, delta1 / abs_rel",
             f"mean depth everywhere {base['delta1']:.3f} / {base['abs_rel']:.3f}",
             f"UNet (demo recipe) {row['delta1']:.3f} / {row['abs_rel']:.3f}", "",
             f"{row['epochs']} epochs of {quality['steps_per_epoch']} steps; {quality['test_images']} test images")
            for row in quality["budgets"]]


def markdown(results: dict) -> str:
    """docs/benchmarks.md's table: every figure beside its baseline, with the ratio; median (min-max) over the repeats."""
    m = results["machine"]
    rows = [*pipeline_rows(results), *profile_rows(results), *training_rows(results), *inference_rows(results),
            *limit_rows(results), *quality_rows(results)]
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
