"""python -m benchmarks.scale: NYU at full size (issue 27). An NYU-format nyu_data.zip of 50,000 training frames
and one of 2,000 (DenseDepth's layout: data/nyu2_train/<scene>_out/<n>.jpg|png listed in data/nyu2_train.csv,
and 654 test frames), written cheaply from the synthetic set's real 640x480 frames repeated under distinct names
and stored uncompressed; then, for each, measured side by side in one run:

- the time to open the dataset and to its first training batch, the steady samples/s after it, and the peak
  memory (RSS) of that process: each in a freshly spawned process, the two sizes taking turns;
- the time from `train.py --resume` to its first trained step, from a backup at epoch 1 and at epoch 15 (a tiny
  model trained one step in this process, whose backup is then moved to the position of 1 and 15 whole epochs of
  the set: advance_backup), in a fresh process each;
- evaluate.py over the 654 test frames.

--quick runs every code path once: the resume (from epoch 15 only, so no resume ratio) and evaluate.py figures on
the 50-frame set only, and both sets' pipeline probes in one spawned process (their peak RSS then is not each its own).

    python -m benchmarks.scale            # ~5 GB of zips under runs/scale (deleted after), results in benchmarks/scale.json
    python -m benchmarks.scale --quick    # 20 and 50 frames: every code path in about a minute
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import contextlib
import csv
import dataclasses
import io
import multiprocessing
import os
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

import data
import nyu
from layouts import open_source

from .common import (ROOT, benchmark_parser, check_paths, command_line, ratio_summary, say, summary, synthetic_dir,
                     write_results)
from .pipeline import TRAIN_FEED
from .report import machine


@dataclasses.dataclass(frozen=True)
class ScaleSizes:
    """One row of SCALE_SIZES: the two training set sizes, the test frames, how the pipeline and resume run."""

    frames: tuple[int, int]  # the small and the large set's training frames
    resumed_frames: tuple[int, ...]  # the sets resumed and evaluated (the large one among them: the resume ratio's)
    test_frames: int  # evaluate.py's frames (NYU's official test split has 654)
    source_frames: int  # distinct synthetic frames repeated to fill the sets
    batch_size: int
    input_hw: tuple[int, int]  # the pipeline's input size (the resume runs' tiny model takes RESUME_INPUT_HW)
    steady_batches: int  # batches timed after the first one
    fresh_process_per_probe: bool  # each pipeline probe in a process of its own (its peak RSS its own), or all in one
    resume_epochs: tuple[int, ...]  # the backups' positions, in whole epochs of the set (the ratio: last over first)
    repeats: int  # runs of every figure, the sizes taking turns


SCALE_SIZES = {
    "full": ScaleSizes(frames=(2000, 50000), resumed_frames=(2000, 50000), test_frames=654, source_frames=200,
                       batch_size=4, input_hw=nyu.INPUT_HW, steady_batches=50, fresh_process_per_probe=True,
                       resume_epochs=(1, 15), repeats=3),
    # every code path once, in as few TensorFlow processes as that takes (each pays seconds of import): one spawned
    # process probes both sets; one set resumed (one base run, one resumed process, from the later position, where
    # the resumed run's data position is furthest in) and evaluated
    "quick": ScaleSizes(frames=(20, 50), resumed_frames=(50,), test_frames=4, source_frames=8, batch_size=2,
                        input_hw=(48, 64), steady_batches=3, fresh_process_per_probe=False, resume_epochs=(15,),
                        repeats=1),
}
FRAMES_PER_SCENE = 1000  # training frames per data/nyu2_train/<scene>_out folder (NYU's scenes hold a few hundred)
RESUME_FLAGS = ["--model", "unet", "--base-filters", "4", "--input-size", "48", "64", "--steps-per-epoch", "1",
                "--val-split", "none", "--tb-images", "0", "--log-every", "0.001"]  # a tiny model: the data is timed


# ---------------------------------------------------------------------------
# The sets
# ---------------------------------------------------------------------------

def csv_rows(archive: zipfile.ZipFile, name: str) -> list[list[str]]:
    """The (rgb, depth) member pairs data/nyu2_<name>.csv lists."""
    return [row for row in csv.reader(io.TextIOWrapper(archive.open(f"data/nyu2_{name}.csv"))) if row]


def write_nyu_zip(source: Path, path: Path, train_frames: int, test_frames: int) -> Path:
    """An NYU-format nyu_data.zip at `path` (ZIP_STORED, as DenseDepth's) of train_frames training and test_frames
    test frames, each the next frame of the `source` nyu_data.zip's split in turn under a name of its own."""
    with zipfile.ZipFile(source) as archive:
        rows = {name: csv_rows(archive, name) for name in ("train", "test")}
        blobs = {member: archive.read(member) for pairs in rows.values() for pair in pairs for member in pair}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        listed = {"train": [], "test": []}
        for k in range(train_frames):
            scene = f"data/nyu2_train/scale_{k // FRAMES_PER_SCENE:04d}_out/{k % FRAMES_PER_SCENE}"
            listed["train"].append(copy_pair(out, blobs, rows["train"][k % len(rows["train"])], scene, scene))
        for k in range(test_frames):
            name = f"data/nyu2_test/{k:05d}"
            listed["test"].append(copy_pair(out, blobs, rows["test"][k % len(rows["test"])], f"{name}_colors",
                                            f"{name}_depth"))
        for name, pairs in listed.items():
            out.writestr(f"data/nyu2_{name}.csv", "".join(f"{rgb},{depth}\n" for rgb, depth in pairs))
    return path


def copy_pair(out: zipfile.ZipFile, blobs: dict, pair: list[str], rgb_stem: str, depth_stem: str) -> tuple[str, str]:
    """Write the source pair's two files under the new stems (their extensions kept); returns their names."""
    names = tuple(stem + Path(member).suffix for stem, member in zip((rgb_stem, depth_stem), pair))
    for name, member in zip(names, pair):
        out.writestr(name, blobs[member])
    return names


# ---------------------------------------------------------------------------
# Open, first batch, steady rate, peak memory: one fresh process per run
# ---------------------------------------------------------------------------

def pipeline_probe(zip_path: str, batch_size: int, input_hw, steady_batches: int) -> dict:
    """In a freshly spawned process (TensorFlow imported, nothing else done; --quick's probes share one): seconds to
    open the set and to get its first training batch (train.py's feed, TRAIN_FEED), samples/s over the next
    steady_batches, and the process's peak RSS in MiB (ru_maxrss) with the part TensorFlow's import already held."""
    imported_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
    start = time.perf_counter()
    split = open_source(zip_path).split("train")
    opened = time.perf_counter()
    batches = iter(data.make_dataset(split, batch_size=batch_size, input_hw=input_hw, target_hw=input_hw,
                                     **TRAIN_FEED).repeat())
    next(batches)
    first = time.perf_counter()
    for _ in range(steady_batches):
        next(batches)
    return {"open_s": opened - start, "first_batch_s": first - start,
            "samples_per_s": steady_batches * batch_size / (time.perf_counter() - first),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "tensorflow_rss_mib": imported_mib}


def measure_pipelines(zips: dict, sizes: ScaleSizes) -> dict:
    """pipeline_probe of every set, `repeats` times, the sets taking turns, each probe in a freshly spawned process
    (or all in one: sizes.fresh_process_per_probe): {frames: {figure: summary}}, and {frames: [each run's figures]}."""
    runs = {frames: [] for frames in zips}
    probes = [(frames, str(path)) for _ in range(sizes.repeats) for frames, path in zips.items()]
    per_process = 1 if sizes.fresh_process_per_probe else len(probes)
    context = multiprocessing.get_context("spawn")
    for first in range(0, len(probes), per_process):
        with context.Pool(1) as pool:
            for frames, path in probes[first:first + per_process]:
                runs[frames].append(pool.apply(pipeline_probe, (path, sizes.batch_size, sizes.input_hw,
                                                                sizes.steady_batches)))
    units = {"open_s": "s", "first_batch_s": "s", "samples_per_s": "samples/s", "peak_rss_mib": "MiB",
             "tensorflow_rss_mib": "MiB"}
    return {frames: {key: summary([run[key] for run in done], unit) for key, unit in units.items()}
            for frames, done in runs.items()}, runs


# ---------------------------------------------------------------------------
# Resume and evaluate: train.py and evaluate.py as a user runs them
# ---------------------------------------------------------------------------

def script(name: str, *flags) -> list[str]:
    return [sys.executable, str(ROOT / name), *[str(flag) for flag in flags]]


def run_checked(command: list[str]) -> float:
    """Run `command`; its wall time in seconds; RuntimeError with its last lines if it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def train_base_run(zip_path: Path, run_dir: Path, batch_size: int) -> Path:
    """RESUME_FLAGS' tiny model trained one step on the set at zip_path into run_dir, in this process (it is not
    timed, so it needs no fresh process); train.py's progress lines are dropped, as stdout carries only the table.
    Returns run_dir."""
    import train  # here, not at the top: the spawned pipeline probes import this module, and their memory is measured

    argv = [*RESUME_FLAGS, "--bs", str(batch_size), "--epochs", "1", "--data", str(zip_path), "--out", str(run_dir)]
    with contextlib.redirect_stdout(io.StringIO()):
        train.main(train.parse_args(argv))
    return run_dir


def advance_backup(run_dir: Path, epoch: int, step: int) -> None:
    """Rewrite run_dir's backup as if taken after `epoch` epochs and `step` trained steps (rundir.Backup's epoch
    and step variables), the weights and optimizer as they are: every tensor copied into a new checkpoint."""
    directory = run_dir / "backup"
    reader = tf.train.load_checkpoint(str(directory))
    dtypes = reader.get_variable_to_dtype_map()
    values = {key: reader.get_tensor(key) for key in dtypes}
    values.update({"epoch/.ATTRIBUTES/VARIABLE_VALUE": np.int64(epoch), "step/.ATTRIBUTES/VARIABLE_VALUE": np.int64(step)})
    prefix = str(directory / f"ckpt-{epoch}")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(values), shape_and_slices=[""] * len(values),
                      tensors=[tf.constant(value, dtypes[key]) for key, value in values.items()])
    # the CheckpointState text proto tf.train.get_checkpoint_state reads: this checkpoint, and it alone
    (directory / "checkpoint").write_text(f'model_checkpoint_path: "{prefix}"\nall_model_checkpoint_paths: "{prefix}"\n')


def seconds_to_first_step(run_dir: Path, epoch: int) -> float:
    """Seconds from starting `train.py --out run_dir --resume` (one more epoch) to its progress line of the first
    trained step (RESUME_FLAGS print one per step); it then finishes that one-step epoch."""
    start = time.perf_counter()
    process = subprocess.Popen(script("train.py", "--out", run_dir, "--resume", "--epochs", epoch + 1), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = None
    for line in process.stdout:
        if first is None and line.startswith(f"epoch {epoch + 1}/{epoch + 1} step 1/"):
            first = time.perf_counter() - start
    err = process.stderr.read()
    if process.wait() != 0 or first is None:
        raise RuntimeError(f"train.py --resume in {run_dir} exited {process.returncode}: {err.strip()[-2000:]}")
    return first


def measure_resume(zips: dict, work: Path, sizes: ScaleSizes) -> dict:
    """{frames: {"epoch N": summary of seconds_to_first_step}} from backups at sizes.resume_epochs whole epochs
    of each set (frames // batch_size steps each), each resume in a fresh copy of the set's base run, in turns."""
    runs = {frames: train_base_run(path, work / f"run{frames}", sizes.batch_size) for frames, path in zips.items()}
    times = {(frames, epoch): [] for frames in zips for epoch in sizes.resume_epochs}
    for _ in range(sizes.repeats):
        for frames, epoch in times:
            copy = work / f"resume{frames}-{epoch}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(runs[frames], copy)
            advance_backup(copy, epoch, epoch * (frames // sizes.batch_size))
            times[frames, epoch].append(seconds_to_first_step(copy, epoch))
    return {frames: {f"epoch {epoch}": summary(times[frames, epoch], "s") for epoch in sizes.resume_epochs}
            for frames in zips}, times, runs


def resume_ratio(times: dict, frames: int, epochs: tuple[int, ...]) -> dict | None:
    """ratio_summary of the resume times {(frames, epoch): [seconds]} from the last position in `epochs` over those
    from the first, at `frames`; None when there is one position (--quick's)."""
    return ratio_summary(times[frames, epochs[-1]], times[frames, epochs[0]]) if len(epochs) > 1 else None


def measure_evaluate(model: Path, zips: dict, work: Path, sizes: ScaleSizes) -> dict:
    """{frames: summary of evaluate.py's wall time over the set's test frames}, the sets in turns."""
    times = {frames: [] for frames in zips}
    for _ in range(sizes.repeats):
        for frames, path in zips.items():
            times[frames].append(run_checked(script("evaluate.py", "--model", model, "--data", path, "--out",
                                                    work / f"evaluate{frames}")))
    return {frames: summary(done, "s") for frames, done in times.items()}


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def spread(figure: dict, digits: int) -> str:
    """'median (min-max)' of a summary() or ratio_summary()."""
    return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}-{figure['max']:.{digits}f})"


def summary_row(label: str, at_small: dict | None, at_large: dict | None, digits: int) -> str:
    """A table row of two summaries and their medians' ratio; a figure not measured at one size (None, --quick's
    resume and evaluate.py figures) is said so, without a ratio."""
    if at_small is None or at_large is None:
        cells = ("not measured" if figure is None else spread(figure, digits) for figure in (at_small, at_large))
        return f"| {label} | {' | '.join(cells)} |  |"
    ratio = at_large["median"] / at_small["median"]
    return f"| {label} | {spread(at_small, digits)} | {spread(at_large, digits)} | {ratio:.2f} |"


def markdown(results: dict, sizes: ScaleSizes) -> str:
    """The report's table: every figure at both sizes and their ratio, then the three ratios the issue asks for (one
    not measured, None: --quick's resume ratio, said so)."""
    small, large = sizes.frames
    pipeline, resume, evaluate = results["pipeline"], results["resume_s"], results["evaluate_s"]
    rows = [("zip size, MiB", results["zip_mib"][small], results["zip_mib"][large], 1)]
    rows += [(label, pipeline[small][key], pipeline[large][key], digits) for label, key, digits in (
        ("open the dataset, s", "open_s", 2), ("open to the first training batch, s", "first_batch_s", 2),
        ("steady rate after it, samples/s", "samples_per_s", 0), ("peak RSS of that process, MiB", "peak_rss_mib", 0),
        ("... of which TensorFlow's import, MiB", "tensorflow_rss_mib", 0))]
    rows += [(f"train.py --resume to the first step, from epoch {epoch}, s", *(
        resume.get(frames, {}).get(f"epoch {epoch}") for frames in (small, large)), 1) for epoch in sizes.resume_epochs]
    rows.append((f"evaluate.py over {sizes.test_frames} test frames, s", evaluate.get(small), evaluate.get(large), 1))
    lines = [f"| Figure | {small} frames | {large} frames | {large} / {small} |", "|---|---|---|---|"]
    for label, at_small, at_large, digits in rows:
        if isinstance(at_small, (int, float)):
            lines.append(f"| {label} | {at_small} | {at_large} | {at_large / at_small:.1f} |")
        else:
            lines.append(summary_row(label, at_small, at_large, digits))
    keys = ("resume_ratio_epoch15_vs_epoch1", "first_batch_growth_50k_vs_2k", "memory_growth_50k_vs_2k")
    lines += ["", *(f"- `{key}`: {'not measured' if results[key] is None else spread(results[key], 3)}"
                    for key in keys)]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = benchmark_parser("python -m benchmarks.scale", __doc__, "20 and 50 frames: every code path",
                              "benchmarks/scale.json", "folder for the zips (deleted after) and the runs")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of every figure, the sizes taking turns (default 3; --quick 1)")
    return parser.parse_args(argv)


def main(args) -> dict:
    """Write the two sets, measure, write the JSON (the issue's three ratios at its top level); returns it.
    DataError, before any of it, for a --json, --cache or --work folder that cannot be written."""
    check_paths(args)
    sizes = SCALE_SIZES["quick" if args.quick else "full"]
    sizes = sizes if args.repeats is None else dataclasses.replace(sizes, repeats=args.repeats)
    work = Path(args.work) / "scale"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = "python -m benchmarks.scale" + (" --quick" if args.quick else "") + \
        ("" if args.repeats is None else f" --repeats {args.repeats}")
    results = {"command": command, "machine": machine()}
    source = synthetic_dir(Path(args.cache), sizes.source_frames) / "nyu_data.zip"
    small, large = sizes.frames
    try:
        zips = {}
        for frames in sizes.frames:
            say(f"writing an NYU-format zip of {frames} training frames")
            zips[frames] = write_nyu_zip(source, work / f"nyu_data_{frames}.zip", frames, sizes.test_frames)
        results["zip_mib"] = {frames: round(path.stat().st_size / 2**20, 1) for frames, path in zips.items()}
        say("open, first batch, steady rate and peak memory, "
            + ("each in a fresh process" if sizes.fresh_process_per_probe else "in one spawned process"))
        results["pipeline"], pipeline_runs = measure_pipelines(zips, sizes)
        say(f"train.py --resume to the first step, from backups at epoch {' and '.join(map(str, sizes.resume_epochs))}")
        resumed = {frames: zips[frames] for frames in sizes.resumed_frames}
        results["resume_s"], resume_runs, trained = measure_resume(resumed, work, sizes)
        say(f"evaluate.py over {sizes.test_frames} test frames")
        model = trained[sizes.resumed_frames[0]] / "model.keras"
        results["evaluate_s"] = measure_evaluate(model, resumed, work, sizes)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the zips are gigabytes: never left behind
    results["resume_ratio_epoch15_vs_epoch1"] = resume_ratio(resume_runs, large, sizes.resume_epochs)
    results["first_batch_growth_50k_vs_2k"] = ratio_summary([r["first_batch_s"] for r in pipeline_runs[large]],
                                                           [r["first_batch_s"] for r in pipeline_runs[small]])
    results["memory_growth_50k_vs_2k"] = ratio_summary([r["peak_rss_mib"] for r in pipeline_runs[large]],
                                                       [r["peak_rss_mib"] for r in pipeline_runs[small]])
    results["machine"]["load_average_at_end"] = list(os.getloadavg())  # the machine is shared: say how busy it was
    results["markdown"] = markdown(results, sizes)
    write_results(results, args.json)
    return results


if __name__ == "__main__":
    sys.exit(command_line(main, parse_args))
