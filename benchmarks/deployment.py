"""Deployment: ms per 640x480 photograph of every backend a depth model runs on, and each export's accuracy.

    python -m benchmarks.deployment [--quick] [--json benchmarks/deployment.json]

Speed: the UNet and the DenseNet-169 transfer model (random weights: speed does not depend on them), each
backend at batch 1 and 8, taking turns as the other measures do. Every row but Keras predict is
predict.predict_depth_m(flip=False) on uint8 photographs, from the photo to metres at the photo's size, with
the exports written without the flip (export.py --no-flip) so that all rows do the same work.
Accuracy: a small UNet trained for a few minutes with the demo's recipe, exported as a user would (flip inside),
scored by evaluate.py's protocol on the synthetic test split beside the Keras model: delta1 and abs_rel and
their differences, the largest depth difference in metres, int8's depth step, and the file size. (export.py
itself prints the largest difference of any model it exports, on its calibration images for int8.)
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

import backends
import data
import evaluate
import export
import nyu
import synth
from layouts import open_source
from model import build_model, depth_scale_of
from predict import predict_depth_m

from .common import (PLAIN_PREDICT, benchmark_parser, check_paths, command_line, interleaved, ratio_summary, say,
                     summary, write_results)
from .inference import in_batches, keras_depth_m, photographs
from .quality import DEMO_RECIPE, run_script
from .report import machine

PROJECT = "predict.py tf.function"
# backend -> (format, quantize) of its export; PLAIN_PREDICT and PROJECT run the Keras model itself
EXPORTED = {"SavedModel": ("savedmodel", "none"), "LiteRT float32": ("tflite", "none"),
            "LiteRT float16": ("tflite", "float16"), "LiteRT int8": ("tflite", "int8"),
            "ONNX Runtime": ("onnx", "none")}
BACKENDS = (PLAIN_PREDICT, PROJECT, *EXPORTED)
FLOAT_BOUND_M = 1e-3  # the issue's goals: float32 exports within 1e-3 m of Keras, int8 delta1 within 0.02,
INT8_DELTA1_BOUND = 0.02  # the fastest export at batch 1 at least 2x predict.py's tf.function for the UNet
SPEEDUP_GOAL = 2.0
FLOAT32_EXPORTS = ("SavedModel", "LiteRT float32", "ONNX Runtime")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Sizes of a run: pixels as (height, width), training in minutes."""

    repeats: int
    input_hw: tuple[int, int]
    infer_hw: tuple[int, int]  # the photographs timed (the name inference.photographs reads)
    infer_images: int
    infer_batches: tuple[int, ...]
    transfer_encoder: str
    calibration_frames: int
    train_frames: int
    test_frames: int
    train_minutes: float


SETTINGS = {
    "full": Settings(repeats=3, input_hw=nyu.INPUT_HW, infer_hw=nyu.FRAME_HW, infer_images=8, infer_batches=(1, 8),
                     transfer_encoder="densenet169", calibration_frames=100, train_frames=600, test_frames=40,
                     train_minutes=3.0),
    # Every code path in a few minutes.
    "quick": Settings(repeats=2, input_hw=(48, 64), infer_hw=(96, 128), infer_images=4, infer_batches=(1, 4),
                      transfer_encoder="vgg16", calibration_frames=8, train_frames=32, test_frames=4,
                      train_minutes=0.1),
}


def size_mib(path: Path) -> float:
    """A file's size, or a folder's total, in MiB."""
    files = path.rglob("*") if path.is_dir() else [path]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def export_all(net: keras.Model, folder: Path, *, flip: bool, calibration) -> dict[str, Path]:
    """{backend: path} of net exported as each of EXPORTED into folder."""
    depth_scale = depth_scale_of(net)
    return {backend: export.export_model(net, depth_scale, folder / f"{fmt}_{quantize}{export.OUT_SUFFIXES[fmt]}",
                                         fmt=fmt, quantize=quantize, flip=flip, calibration=calibration)
            for backend, (fmt, quantize) in EXPORTED.items()}


def measure_speed(net: keras.Model, photos: np.ndarray, folder: Path, settings: Settings, calibration) -> dict:
    """ms per photograph of each of BACKENDS at each batch size, and each one's speed-up over PROJECT at the
    same batch size (per repeat, side by side)."""
    depth_scale = depth_scale_of(net)
    models = {backend: backends.load_exported(path) for backend, path in
              export_all(net, folder, flip=False, calibration=calibration).items()}
    paths = {PLAIN_PREDICT: lambda x: keras_depth_m(net, x, depth_scale),
             PROJECT: lambda x: predict_depth_m(net, x, flip=False),
             **{backend: (lambda x, m=m: predict_depth_m(m, x, flip=False)) for backend, m in models.items()}}

    def ms_per_image(predict, batch):
        start = time.perf_counter()
        in_batches(predict, photos, batch)
        return 1000.0 * (time.perf_counter() - start) / len(photos)

    measures = {(backend, b): (lambda p=predict, b=b: ms_per_image(p, b))
                for backend, predict in paths.items() for b in settings.infer_batches}
    runs = interleaved(measures, settings.repeats)
    label = {key: f"{key[0]} @ batch {key[1]}" for key in runs}
    return {
        "model": net.name, "input_hw": list(net.input_shape[1:3]), "photo_hw": list(photos.shape[1:3]),
        "ms_per_image": {label[key]: summary(values, "ms/image") for key, values in runs.items()},
        "speedup_over_project": {label[key]: ratio_summary(runs[PROJECT, key[1]], values)
                                 for key, values in runs.items()},
        "file_mib": {backend: size_mib(Path(m.path)) for backend, m in models.items()},
    }


def train_small_unet(data_dir: str, work: Path, minutes: float, input_hw) -> Path:
    """train.py with the demo's recipe for `minutes` on data_dir; returns its model.keras."""
    run_dir = work / "deployment-unet"
    shutil.rmtree(run_dir, ignore_errors=True)  # train.py refuses to overwrite a run
    run_script("train.py", f"@{DEMO_RECIPE}", "--data", data_dir, "--time-budget", f"{minutes:g}",
               "--input-size", *map(str, input_hw), "--out", str(run_dir))
    return run_dir / "model.keras"


def measure_accuracy(model_path: Path, data_dir: str, folder: Path, settings: Settings) -> dict:
    """Each export of the trained model (flip inside) against the Keras model on the test split, evaluate.py's
    protocol (flip on, data's crop): mean delta1 and abs_rel, their differences, the largest depth difference."""
    net = keras.models.load_model(model_path)
    source = open_source(data_dir)
    calibration = export.calibration_images(source.split("train"), net.input_shape[1:3], settings.calibration_frames)
    paths = export_all(net, folder, flip=True, calibration=calibration)
    candidates = [evaluate.Candidate("Keras", "keras", net, depth_scale_of(net))]
    candidates += [evaluate.Candidate(backend, backend, *backends.load_depth_model(path))
                   for backend, path in paths.items()]
    split = source.split("test")
    evaluate.score_split(split, candidates, crop="auto", flip=True, median_scaling=False, constants=[])
    photos = np.stack([frame["rgb"].numpy() for frame in data.frames(split)])
    reference = predict_depth_m(net, photos)
    keras_metrics = table_means(candidates[0].rows)
    results = {"Keras": {**keras_metrics, "file_mib": size_mib(model_path)}}
    for candidate, path in zip(candidates[1:], paths.values()):
        metrics = table_means(candidate.rows)
        results[candidate.label] = {
            **metrics, "delta1_diff": metrics["delta1"] - keras_metrics["delta1"],
            "abs_rel_diff": metrics["abs_rel"] - keras_metrics["abs_rel"],
            "max_abs_diff_m": float(np.abs(predict_depth_m(candidate.model, photos) - reference).max()),
            "depth_step_m": candidate.model.info.depth_step_m,  # int8: its output's quantization step
            "file_mib": size_mib(path),
        }
    return {"model": str(model_path), "test_images": len(candidates[0].rows), "backends": results}


def table_means(rows: list[dict]) -> dict:
    """Mean delta1 and abs_rel over images (evaluate.py's aggregation)."""
    return {name: float(np.mean([row[name] for row in rows])) for name in ("delta1", "abs_rel")}


def goals(results: dict) -> dict:
    """The issue's three goals, each with the measured figure and whether it is met."""
    speed = results["speed"]["unet"]
    fastest = min(EXPORTED, key=lambda b: speed["ms_per_image"][f"{b} @ batch 1"]["median"])
    speedup = speed["speedup_over_project"][f"{fastest} @ batch 1"]["median"]
    accuracy = results["accuracy"]["backends"]
    float_diff = max(accuracy[b]["max_abs_diff_m"] for b in FLOAT32_EXPORTS)
    int8_diff = abs(accuracy["LiteRT int8"]["delta1_diff"])
    return {
        "fastest_export_speedup_batch1_unet": {"backend": fastest, "value": speedup, "goal": f">= {SPEEDUP_GOAL:g}",
                                               "met": speedup >= SPEEDUP_GOAL},
        "float32_max_abs_diff_m": {"value": float_diff, "goal": f"<= {FLOAT_BOUND_M:g}",
                                   "met": float_diff <= FLOAT_BOUND_M},
        "int8_delta1_diff": {"value": int8_diff, "goal": f"<= {INT8_DELTA1_BOUND:g}",
                             "met": int8_diff <= INT8_DELTA1_BOUND},
    }


def markdown(results: dict) -> str:
    """docs/deployment.md's table: ms per photograph per model and batch size, then the trained UNet's accuracy."""
    batches = results["settings"]["infer_batches"]
    kinds = list(results["speed"])
    head = [f"{kind} @ batch {b}" for kind in kinds for b in batches]
    lines = ["| backend | " + " | ".join(f"{h} (ms/image)" for h in head) + " | vs tf.function, UNet @ batch 1 |",
             "| --- " * (len(head) + 2) + "|"]
    for backend in BACKENDS:
        cells = [f"{results['speed'][kind]['ms_per_image'][f'{backend} @ batch {b}']['median']:.1f}"
                 for kind in kinds for b in batches]
        ratio = results["speed"]["unet"]["speedup_over_project"][f"{backend} @ batch 1"]["median"]
        lines.append(f"| {backend} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    accuracy = results["accuracy"]
    lines += ["", f"Accuracy of the trained UNet's exports on {accuracy['test_images']} synthetic test images "
              "(flip inside the export, evaluate.py's protocol):", "",
              "| backend | delta1 | abs_rel | delta1 - Keras | abs_rel - Keras | max abs depth diff (m) | file (MiB) |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for backend, row in accuracy["backends"].items():
        diffs = ([f"{row['delta1_diff']:+.4f}", f"{row['abs_rel_diff']:+.4f}", f"{row['max_abs_diff_m']:.2g}"]
                 if backend != "Keras" else ["-", "-", "-"])
        lines.append(f"| {backend} | {row['delta1']:.4f} | {row['abs_rel']:.4f} | " + " | ".join(diffs)
                     + f" | {row['file_mib']:.2f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = benchmark_parser("python -m benchmarks.deployment", __doc__,
                              "tiny sizes and a 6-second training run: every code path", "benchmarks/deployment.json",
                              "folder for the trained UNet")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    """Measure, write the JSON, print the Markdown tables; returns the results."""
    check_paths(args)
    mode = "quick" if args.quick else "full"
    settings = SETTINGS[mode]
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    results = {"machine": machine(), "settings": {"mode": mode, **dataclasses.asdict(settings)}}
    data_dir = str(Path(synth.ensure_synthetic(Path(args.cache) / f"deploy{settings.train_frames}",
                                               train=settings.train_frames, test=settings.test_frames)).resolve())
    photos = photographs(Path(data_dir), settings)
    calibration = export.calibration_images(open_source(data_dir).split("train"), settings.input_hw,
                                            settings.calibration_frames)
    nets = {"unet": lambda: build_model("unet", input_hw=settings.input_hw),
            "transfer": lambda: build_model("transfer", encoder=settings.transfer_encoder, input_hw=settings.input_hw)}
    results["speed"] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind, build in nets.items():
            say(f"speed: {kind}, {len(BACKENDS)} backends at batch {settings.infer_batches}")
            (Path(folder) / kind).mkdir()
            results["speed"][kind] = measure_speed(build(), photos, Path(folder) / kind, settings, calibration)
        say(f"accuracy: training a UNet for {settings.train_minutes:g} min with {DEMO_RECIPE}")
        work = Path(args.work).resolve()
        model_path = train_small_unet(data_dir, work, settings.train_minutes, settings.input_hw)
        (Path(folder) / "trained").mkdir()
        results["accuracy"] = measure_accuracy(model_path, data_dir, Path(folder) / "trained", settings)
    results["goals"] = goals(results)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = time.perf_counter() - started
    results["markdown"] = markdown(results)
    out = write_results(results, args.json)
    say(f"goals: {json.dumps(results['goals'])}")
    say(f"wrote {out} in {results['duration_s'] / 60:.1f} min")
    return results


if __name__ == "__main__":
    sys.exit(command_line(main, parse_args))
