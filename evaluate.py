"""Measure trained depth models on a test split with the standard NYU Depth V2 protocol, beside published numbers.

    python evaluate.py --model runs/unet/model.keras --model runs/transfer/model.keras --data data/synth \
        --photos ../shared/nyu_examples

Per test image: predict at the ground truth's size (flip test-time augmentation on by default), clip to the
model's depth range, and score inside a crop over the pixels whose ground truth lies in that range; the
table reports the mean over images. It is printed and written to --out as table.md and table.csv, with
metrics.json, per_image_<model>.csv and examples_<model>.png (best, median and worst images by abs_rel).
With two or more models it also writes comparison.png: --compare-frames test images, evenly spaced over the
evaluated ones, as RGB | ground truth | each model's prediction with its abs_rel there. --photos (photographs
without ground truth) adds photos.png: RGB | each model's prediction for up to --max-photos of them.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm import tqdm

from camera import NYU_FRAME_HW
from data import EIGEN_CROP, DataError, DepthScale, Split, frames, open_source
from loss import depth_errors
from model import depth_scale_of, load_model
from predict import DEPTH_CMAP, IMAGE_ERRORS, find_inputs, predict_depth_m, read_rgb

METRICS = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")  # depth_errors' keys
TABLE_METRICS = ("delta1", "delta2", "delta3", "abs_rel", "rmse", "log10")
PUBLISHED_ON = "published, NYU Depth V2 test (654)"

# Numbers as each paper reports them on NYU Depth V2's official test split; None where it gives none.
PUBLISHED = [
    {"method": "Eigen & Fergus 2015 (the seed paper's Eigen et al.)",
     "delta1": 0.769, "delta2": 0.950, "delta3": 0.988, "abs_rel": 0.158, "rmse": 0.641, "log10": None},
    {"method": "Laina et al. 2016",
     "delta1": 0.811, "delta2": 0.953, "delta3": 0.988, "abs_rel": 0.127, "rmse": 0.573, "log10": 0.055},
    {"method": "Alhashim & Wonka 2018 (DenseDepth)",
     "delta1": 0.846, "delta2": 0.974, "delta3": 0.994, "abs_rel": 0.123, "rmse": 0.465, "log10": 0.053},
    {"method": "Alhashim & Wonka 2018 (DenseDepth), per-image median scaling",
     "delta1": 0.895, "delta2": 0.980, "delta3": 0.996, "abs_rel": 0.103, "rmse": 0.390, "log10": None},
    {"method": "seed paper (CS231N): UNet",
     "delta1": 0.558, "delta2": 0.712, "delta3": 0.836, "abs_rel": 0.384, "rmse": 0.751, "log10": None},
    {"method": "seed paper (CS231N): transfer model",
     "delta1": 0.661, "delta2": 0.784, "delta3": 0.837, "abs_rel": 0.292, "rmse": 0.682, "log10": None},
    {"method": "Lee et al. 2019 (BTS)",
     "delta1": 0.885, "delta2": 0.978, "delta3": 0.994, "abs_rel": 0.110, "rmse": 0.392, "log10": 0.047},
    {"method": "Bhat et al. 2021 (AdaBins)",
     "delta1": 0.903, "delta2": 0.984, "delta3": 0.997, "abs_rel": 0.103, "rmse": 0.364, "log10": 0.044},
]

# The NYU evaluation crops of a 480x640 frame: name -> ((top, bottom, left, right), all inclusive; whose it is).
NYU_CROPS = {
    "eigen": (EIGEN_CROP, "Eigen's, as in DenseDepth's eigen_test_crop.npy"),
    "bts": ((45, 470, 41, 600), "BTS / AdaBins'"),
}
CROP_CHOICES = {
    "auto": "the data's own crop (eigen_test_crop.npy) if it ships one, else eigen for 480x640 frames, else none",
    "eigen": "Eigen / DenseDepth's crop, rows 20-459 and columns 24-615 (480x640 frames only)",
    "bts": "BTS / AdaBins' crop, rows 45-470 and columns 41-600 (480x640 frames only)",
    "none": "the whole frame",
}


# ---------------------------------------------------------------------------
# Scoring one image
# ---------------------------------------------------------------------------

def compute_errors(gt, pred, mask=None) -> dict[str, float]:
    """`loss.depth_errors` as Python floats: gt and pred [...] in metres (ground truth FIRST, the denominator
    of the relative errors), mask the same shape (True = scored). Keys: METRICS."""
    return {name: float(value) for name, value in depth_errors(gt, pred, mask).items()}


def _box_text(box) -> str:
    top, bottom, left, right = box
    return f"rows {top}-{bottom}, columns {left}-{right}"


def frame_crop(choice: str, hw, data_crop=None) -> tuple[tuple | None, str]:
    """(box, label): the crop (top, bottom, left, right, inclusive) a frame of size hw = (H, W) is scored in,
    None for the whole frame, and a label saying which. choice: a key of CROP_CHOICES; data_crop: the
    split's own crop (Split.crop). The NYU crops are refused for frames that are not 480x640."""
    nyu_frame = tuple(hw) == NYU_FRAME_HW
    if choice == "auto":
        if data_crop is not None:
            return tuple(data_crop), f"the data's own ({_box_text(data_crop)})"
        choice = "eigen" if nyu_frame else "none"
    if choice == "none":
        return None, "none (whole frame)"
    if not nyu_frame:
        raise DataError(f"--crop {choice} is defined for 480x640 NYU frames, not {hw[0]}x{hw[1]}; use --crop auto or none")
    box, whose = NYU_CROPS[choice]
    return box, f"{choice}: {whose} ({_box_text(box)})"


def crop_mask(hw, box=None) -> np.ndarray:
    """bool [H, W]: True inside box = (top, bottom, left, right), all inclusive; everywhere for None."""
    mask = np.zeros(hw, bool)
    top, bottom, left, right = box if box is not None else (0, hw[0] - 1, 0, hw[1] - 1)
    mask[top:bottom + 1, left:right + 1] = True
    return mask


def valid_mask(gt_m: np.ndarray, depth_scale: DepthScale, box=None) -> np.ndarray:
    """bool [H, W]: the scored pixels, inside the crop where the ground truth [H, W] (metres) is within
    [depth_scale.min_depth_m, depth_scale.max_depth_m]."""
    in_range = (gt_m >= depth_scale.min_depth_m) & (gt_m <= depth_scale.max_depth_m)
    return in_range & crop_mask(gt_m.shape, box)


def median_scaled(gt_m: np.ndarray, pred_m: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """pred * median(gt) / median(pred) over the valid pixels (DenseDepth's per-image median scaling), unclipped."""
    return pred_m * (np.median(gt_m[valid]) / np.median(pred_m[valid]))


# ---------------------------------------------------------------------------
# Evaluating a split
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Candidate:
    """A model under evaluation: its label in the table, file-name slug, and per-image results."""

    label: str
    slug: str
    model: keras.Model
    depth_scale: DepthScale
    rows: list = dataclasses.field(default_factory=list)  # per image: frame, index, ms, METRICS[, median_*]

    @property
    def ms_per_image(self) -> float:
        """Median wall time of predict_depth_m per image (the median skips the first call's tracing)."""
        return float(np.median([row["ms"] for row in self.rows]))


def model_slugs(paths) -> list[str]:
    """A file-name-safe name per model path from its last two parts (runs/unet/model.keras -> unet_model),
    numbered when two would collide."""
    slugs = []
    for path in paths:
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", "_".join(Path(path).with_suffix("").parts[-2:])).strip("_")
        slugs.append(slug if slug not in slugs else f"{slug}_{len(slugs) + 1}")
    return slugs


def _subset(split: Split, indices) -> Split:
    """The frames of `split` at `indices` as a split of their own (same names, reader and crop)."""
    return dataclasses.replace(split, keys=[split.keys[int(i)] for i in indices], skipped=[])


def evenly_spaced(length: int, count: int) -> np.ndarray:
    """int [min(count, length)]: positions in range(length), evenly spaced from the first to the last, no repeats."""
    return np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int))


def mean_depth_m(split: Split, max_frames: int) -> float:
    """Mean ground-truth depth in metres over the valid (> 0) pixels of at most max_frames evenly spaced frames."""
    indices = evenly_spaced(len(split), max_frames)
    total, count = 0.0, 0
    for frame in tqdm(frames(_subset(split, indices)), total=len(indices), desc=f"{split.name} mean depth",
                      unit="frame", file=sys.stderr):
        depth = frame["depth"].numpy()
        total, count = total + float(depth[depth > 0].sum(dtype=np.float64)), count + int((depth > 0).sum())
    if count == 0:
        raise DataError(f"{split.source} {split.name} split has no valid depth pixel in {len(indices)} frames")
    return total / count


def score_split(
    split: Split, candidates: list[Candidate], *, crop: str, flip: bool, median_scaling: bool,
    baseline_m: float, limit: int | None = None,
) -> tuple[list[dict], set[str]]:
    """Stream the split's frames once, scoring every candidate on each; candidates' rows are filled in.

    Returns the rows of the constant baseline (baseline_m metres everywhere, scored on the first candidate's
    valid pixels) and the labels of the crops used. Frames whose crop holds no valid ground truth are left out.
    """
    count = len(split) if limit is None else min(limit, len(split))
    baseline_rows, crops_used = [], set()
    for frame in tqdm(frames(split).take(count), total=count, desc="evaluate", unit="image", file=sys.stderr):
        rgb, gt = frame["rgb"].numpy(), frame["depth"].numpy()[..., 0]  # uint8 [H, W, 3], metres [H, W]
        index = int(frame["index"])
        name = split.frame_name(index)
        if rgb.shape[:2] != gt.shape:
            raise DataError(f"{split.describe(index)}: RGB {rgb.shape[:2]} and depth {gt.shape} differ in size")
        box, crop_label = frame_crop(crop, gt.shape, split.crop)
        crops_used.add(crop_label)
        valid = [valid_mask(gt, c.depth_scale, box) for c in candidates]
        if not all(v.any() for v in valid):
            split.skipped.append(f"{split.describe(index)}: no valid ground truth inside the crop")
            continue
        for candidate, scored in zip(candidates, valid):
            start = time.perf_counter()
            pred = predict_depth_m(candidate.model, rgb, candidate.depth_scale, flip=flip)  # [H, W] metres
            row = {"frame": name, "index": index, "ms": 1000.0 * (time.perf_counter() - start)}
            row.update(compute_errors(gt, pred, scored))
            if median_scaling:
                scaled = compute_errors(gt, median_scaled(gt, pred, scored), scored)
                row.update({f"median_{k}": v for k, v in scaled.items()})
            candidate.rows.append(row)
        baseline_rows.append({"frame": name, "index": index, **compute_errors(gt, np.full_like(gt, baseline_m), valid[0])})
    return baseline_rows, crops_used


def mean_over_images(rows: list[dict], prefix: str = "") -> dict[str, float]:
    """{metric: mean over rows of row[prefix + metric]} for every metric in METRICS."""
    return {k: float(np.mean([row[prefix + k] for row in rows])) for k in METRICS}


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def _panel_grid(rows: int, columns: int, panel_hw, title_lines: int = 1) -> tuple[Figure, np.ndarray]:
    """(figure, axes [rows, columns]) drawn with Agg (no display needed): panels about 3.2 inches wide at the
    aspect of panel_hw = (H, W) pixels with title_lines of title above each row, no ticks, NaN in light grey."""
    height, width = panel_hw
    row_in = 3.2 * height / width + 0.15 + 0.15 * title_lines
    fig = Figure(figsize=(3.75 * columns, rows * row_in + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_facecolor("0.85")  # NaN (no ground truth / not scored) shows as light grey
    return fig, axes


def _holes_as_nan(gt_m: np.ndarray) -> np.ndarray:
    """Ground truth [H, W] metres with NaN where it has none (0), so the holes show as the axes' grey."""
    return np.where(gt_m > 0, gt_m, np.nan)


def _depth_limits(depth_maps) -> tuple[float, float]:
    """(lowest, highest) depth in metres over depth maps of any sizes, NaN ignored: one colour scale for all."""
    return min(float(np.nanmin(d)) for d in depth_maps), max(float(np.nanmax(d)) for d in depth_maps)


def _show_depth(ax, depth_m: np.ndarray, limits):
    """Draw depth [H, W] metres on ax in DEPTH_CMAP over limits = (low, high) metres; returns the image."""
    return ax.imshow(depth_m, cmap=DEPTH_CMAP, vmin=limits[0], vmax=limits[1])


def _depth_colorbar(fig: Figure, image, axes) -> None:
    """One colour bar in metres for `image`'s scale, beside `axes` (the depth panels sharing it)."""
    fig.colorbar(image, ax=axes, label="depth (m)", shrink=0.8)


def _column_titles(axes, headings) -> None:
    """Title the top row of axes [rows, columns] with `headings`, left to right."""
    for ax, heading in zip(axes[0], headings):
        ax.set_title(heading, fontsize=10)


def example_figure(path, split: Split, candidate: Candidate, *, crop: str, flip: bool) -> None:
    """Save a figure of the best, median and worst images by abs_rel: RGB | ground truth | prediction |
    |prediction - ground truth| over the scored pixels; depth panels share one colour scale in metres.

    The three frames are read and predicted again, so evaluation never holds more than one prediction.
    """
    ranked = sorted(candidate.rows, key=lambda row: row["abs_rel"])
    picks = {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}
    subset = _subset(split, [row["index"] for row in picks.values()])
    panels = []  # (title, rgb, gt with NaN holes, prediction, error with NaN outside the scored pixels)
    for (rank, row), frame in zip(picks.items(), frames(subset, strict=True)):
        rgb, gt = frame["rgb"].numpy(), frame["depth"].numpy()[..., 0]
        pred = predict_depth_m(candidate.model, rgb, candidate.depth_scale, flip=flip)
        scored = valid_mask(gt, candidate.depth_scale, frame_crop(crop, gt.shape, split.crop)[0])
        title = f"{rank}: {row['frame']}\nabs_rel {row['abs_rel']:.3f}, rmse {row['rmse']:.3f} m"
        panels.append((title, rgb, _holes_as_nan(gt), pred, np.where(scored, np.abs(pred - gt), np.nan)))
    limits = _depth_limits([depth for _, _, gt, pred, _ in panels for depth in (gt, pred)])
    error_hi = max(float(np.nanmax(error)) for *_, error in panels)

    fig, axes = _panel_grid(len(panels), 4, panels[0][2].shape)
    for ax_row, (title, rgb, gt, pred, error) in zip(axes, panels):
        ax_row[0].imshow(rgb)
        ax_row[0].set_ylabel(title, fontsize=9)
        depth_image = _show_depth(ax_row[1], gt, limits)
        _show_depth(ax_row[2], pred, limits)
        error_image = ax_row[3].imshow(error, cmap="inferno", vmin=0.0, vmax=error_hi)
    _column_titles(axes, ("RGB", "ground truth", "prediction", "|prediction - ground truth|"))
    _depth_colorbar(fig, depth_image, axes[:, 1:3])
    fig.colorbar(error_image, ax=axes[:, 3], label="absolute error (m)", shrink=0.8)
    fig.suptitle(f"{candidate.label} on {split.source} [{split.name}]: best, median and worst of "
                 f"{len(candidate.rows)} images by abs_rel (grey: not scored)", fontsize=11)
    fig.savefig(path)


def comparison_figure(path, split: Split, candidates: list[Candidate], *, count: int, flip: bool) -> None:
    """Save a figure of `count` evaluated images, evenly spaced over them (chosen by position, not by any
    score): RGB | ground truth | each candidate's prediction, titled with its abs_rel on that image; all
    depth panels share one colour scale in metres.

    The frames are read and predicted again, as in example_figure; every candidate holds a row per
    evaluated frame, in the same order, so the first candidate's rows name the frames.
    """
    positions = evenly_spaced(len(candidates[0].rows), count)
    subset = _subset(split, [candidates[0].rows[p]["index"] for p in positions])
    panels = []  # (position in the rows, rgb, gt with NaN holes, [prediction per candidate])
    for position, frame in zip(positions, frames(subset, strict=True)):
        rgb, gt = frame["rgb"].numpy(), frame["depth"].numpy()[..., 0]
        preds = [predict_depth_m(c.model, rgb, c.depth_scale, flip=flip) for c in candidates]
        panels.append((position, rgb, _holes_as_nan(gt), preds))
    limits = _depth_limits([gt for _, _, gt, _ in panels] + [pred for *_, preds in panels for pred in preds])

    fig, axes = _panel_grid(len(panels), 2 + len(candidates), panels[0][2].shape, title_lines=2)
    for row, (ax_row, (position, rgb, gt, preds)) in enumerate(zip(axes, panels)):
        ax_row[0].imshow(rgb)
        ax_row[0].set_ylabel(candidates[0].rows[position]["frame"], fontsize=9)
        depth_image = _show_depth(ax_row[1], gt, limits)
        for ax, candidate, pred in zip(ax_row[2:], candidates, preds):
            _show_depth(ax, pred, limits)
            heading = f"{candidate.label}\n" if row == 0 else ""  # the model names its column once, on top
            ax.set_title(f"{heading}abs_rel {candidate.rows[position]['abs_rel']:.3f}", fontsize=10)
    _column_titles(axes, ("RGB", "ground truth"))
    _depth_colorbar(fig, depth_image, axes[:, 1:])
    fig.suptitle(f"{len(candidates)} models on {split.source} [{split.name}]: {len(panels)} of "
                 f"{len(candidates[0].rows)} images, evenly spaced (grey: no ground truth)", fontsize=11)
    fig.savefig(path)


def read_photos(patterns, max_photos: int) -> list[tuple[str, np.ndarray]]:
    """(file name, RGB uint8 [H, W, 3]) of the first max_photos readable images, by file name, among
    `patterns` (files, folders or glob patterns, as predict.find_inputs takes them). Patterns matching nothing
    and unreadable files are named on stderr and skipped; raises DataError when no photograph is left."""
    paths, unmatched = find_inputs(patterns)
    for pattern in unmatched:
        print(f"{pattern}: matched no file", file=sys.stderr)
    photos = []
    for path in sorted(paths, key=lambda p: p.name):
        if len(photos) == max_photos:
            break
        try:
            photos.append((path.name, read_rgb(path)))
        except IMAGE_ERRORS as err:
            print(f"{path}: not a readable image ({err})", file=sys.stderr)
    if not photos:
        raise DataError(f"--photos {' '.join(patterns)} holds no readable image; give image files, folders or globs")
    return photos


def photo_figure(path, photos: list[tuple[str, np.ndarray]], candidates: list[Candidate], *, flip: bool) -> None:
    """Save a figure of photographs without ground truth: RGB | each candidate's prediction, every depth
    panel on one colour scale in metres. photos: (name, RGB uint8 [H, W, 3]) as read_photos returns them,
    each predicted at its own size."""
    preds = [[predict_depth_m(c.model, rgb, c.depth_scale, flip=flip) for c in candidates] for _, rgb in photos]
    limits = _depth_limits([pred for row in preds for pred in row])
    tallest_hw = max((rgb.shape[:2] for _, rgb in photos), key=lambda hw: hw[0] / hw[1])  # sets the row height

    fig, axes = _panel_grid(len(photos), 1 + len(candidates), tallest_hw)
    for ax_row, (name, rgb), row_preds in zip(axes, photos, preds):
        ax_row[0].imshow(rgb)
        ax_row[0].set_ylabel(name, fontsize=9)
        for ax, pred in zip(ax_row[1:], row_preds):
            depth_image = _show_depth(ax, pred, limits)
    _column_titles(axes, ["RGB"] + [c.label for c in candidates])
    _depth_colorbar(fig, depth_image, axes[:, 1:])
    fig.suptitle(f"{len(photos)} photographs without ground truth", fontsize=11)
    fig.savefig(path)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------

TABLE_COLUMNS = ("method", "evaluated on", *TABLE_METRICS, "ms/image")


def _cell(column: str, value) -> str:
    """A table cell: '-' for a number not published, ms to 0.1, metrics to 0.001, text as is."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "ms/image" else f"{value:.3f}"
    return str(value)


def table_rows(candidates, *, data_label, baseline_label, baseline_rows, median_scaling) -> list[dict]:
    """The benchmark table as dicts keyed by TABLE_COLUMNS: published rows, this run's, then the baseline."""
    rows = [{**row, "evaluated on": PUBLISHED_ON, "ms/image": None} for row in PUBLISHED]
    for c in candidates:
        ms = c.ms_per_image
        rows.append({"method": c.label, "evaluated on": data_label, **mean_over_images(c.rows), "ms/image": ms})
        if median_scaling:
            rows.append({"method": f"{c.label}, per-image median scaling", "evaluated on": data_label,
                         **mean_over_images(c.rows, "median_"), "ms/image": ms})
    rows.append({"method": baseline_label, "evaluated on": data_label, **mean_over_images(baseline_rows), "ms/image": None})
    return [{column: row.get(column) for column in TABLE_COLUMNS} for row in rows]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " --- |" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--model", action="append", required=True,
                      help="a trained model (.keras); repeat to evaluate several into one table")
    what.add_argument("--data", required=True, help="dataset path, in any layout data.py reads (e.g. data/synth)")
    what.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    what.add_argument("--limit", type=int, default=None, help="evaluate only the first N frames (default: all)")
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--crop", choices=CROP_CHOICES, default="auto",
                          help="where to score: " + "; ".join(f"{k}: {v}" for k, v in CROP_CHOICES.items()))
    protocol.add_argument("--no-flip", action="store_true", help="skip the flip test-time augmentation")
    protocol.add_argument("--median-scaling", action="store_true",
                          help="add a row per model with per-image median scaling (DenseDepth's second row)")
    protocol.add_argument("--baseline-frames", type=int, default=200,
                          help="training frames (evenly spaced) averaged for the mean-depth baseline (default: 200)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="outputs/evaluate",
                        help="folder for table.md, table.csv, metrics.json, per-image CSVs and figures "
                             "(default: outputs/evaluate)")
    output.add_argument("--json", default=None, help="also write the metrics JSON to this file")
    figures = parser.add_argument_group("figures (examples_<model>.png are always written)")
    figures.add_argument("--compare-frames", type=int, default=3,
                         help="with two or more --model: test images in comparison.png, evenly spaced over the "
                              "evaluated ones, one row each with every model's prediction and abs_rel (default: 3)")
    figures.add_argument("--photos", action="append", default=None, metavar="DIR_OR_GLOB",
                         help="photographs without ground truth (image files, folders or quoted glob patterns; "
                              "repeat for more) to predict with every model into photos.png")
    figures.add_argument("--max-photos", type=int, default=6,
                         help="photographs in photos.png, the first readable ones by file name (default: 6)")
    args = parser.parse_args(argv)
    for flag in ("limit", "baseline_frames", "compare_frames", "max_photos"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return args


def load_candidates(paths) -> list[Candidate]:
    """Load each model with its DepthScale; raises FileNotFoundError or ValueError naming a bad file."""
    candidates = []
    for path, slug in zip(paths, model_slugs(paths)):
        model = load_model(path)
        candidates.append(Candidate(path, slug, model, depth_scale_of(model)))
    return candidates


def baseline_depth(source, split_name: str, max_frames: int) -> tuple[float, str]:
    """(the training split's mean depth in metres, the baseline's row label); the evaluated split's mean
    when the source has no train split, as the label then says."""
    if "train" in source.splits:
        mean = mean_depth_m(source.split("train"), max_frames)
        return mean, f"baseline: training-set mean depth ({mean:.2f} m) everywhere"
    mean = mean_depth_m(source.split(split_name), max_frames)
    return mean, f"baseline: {split_name}-set mean depth ({mean:.2f} m) everywhere (no train split in the data)"


def write_report(out: Path, args: argparse.Namespace, candidates: list[Candidate], baseline: dict,
                 crops_used: set[str], skipped: list[str]) -> str:
    """Write table.md, table.csv and metrics.json (and --json) to `out`; returns the Markdown.

    baseline: {"label", "depth_m", "rows"} of the mean-depth baseline.
    """
    flip = not args.no_flip
    data_label = f"{args.data} [{args.split}], {len(baseline['rows'])} images"
    rows = table_rows(candidates, data_label=data_label, baseline_label=baseline["label"],
                      baseline_rows=baseline["rows"], median_scaling=args.median_scaling)
    scale = candidates[0].depth_scale
    notes = [
        f"Rows marked '{PUBLISHED_ON}' are numbers as published by each paper on the official NYU Depth V2 test "
        "split, not recomputed here; rows on other data are not comparable with them.",
        f"This run: {data_label}; crop: {'; '.join(sorted(crops_used))}; scored pixels: ground truth within "
        f"the model's depth range ({scale.min_depth_m:g}-{scale.max_depth_m:g} m for the first model); "
        f"aggregation: mean over images of per-image errors; flip test-time augmentation: {'on' if flip else 'off'}; "
        "ms/image: median wall time of predict_depth_m per image at batch 1.",
    ]
    if skipped:
        notes.append(f"Skipped {len(skipped)} frames: " + "; ".join(skipped))
    markdown = "# Depth evaluation\n\n" + "\n\n".join(notes) + "\n\n" + markdown_table(rows) + "\n"
    (out / "table.md").write_text(markdown)
    write_csv(out / "table.csv", rows)
    metrics = {
        "data": args.data, "split": args.split, "images": len(baseline["rows"]), "crop": sorted(crops_used),
        "aggregation": "mean over images", "flip": flip, "skipped": skipped,
        "models": {
            c.slug: {
                "path": c.label, "depth_scale": c.depth_scale.to_config(), "metrics": mean_over_images(c.rows),
                **({"median_scaled": mean_over_images(c.rows, "median_")} if args.median_scaling else {}),
                "ms_per_image": c.ms_per_image,
            }
            for c in candidates
        },
        "baseline": {"label": baseline["label"], "depth_m": baseline["depth_m"],
                     "metrics": mean_over_images(baseline["rows"])},
        "published": {"evaluated_on": PUBLISHED_ON, "rows": PUBLISHED},
    }
    for path in [out / "metrics.json"] + ([Path(args.json)] if args.json else []):
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    return markdown


def main(args: argparse.Namespace) -> int:
    """Run the command line; returns the exit code (2 for a bad dataset, model, --photos or output path, with one
    sentence). The photographs are read before evaluating, so a bad --photos fails at once."""
    try:
        candidates = load_candidates(args.model)
    except (FileNotFoundError, ValueError) as err:  # load_model's and depth_scale_of's one-sentence errors
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        source = open_source(args.data)
        split = source.split(args.split)
        photos = read_photos(args.photos, args.max_photos) if args.photos else []
        baseline_m, baseline_label = baseline_depth(source, args.split, args.baseline_frames)
        split.take_skipped()  # forget any skips from the baseline's frames
        baseline_rows, crops_used = score_split(
            split, candidates, crop=args.crop, flip=not args.no_flip, median_scaling=args.median_scaling,
            baseline_m=baseline_m, limit=args.limit,
        )
        skipped = split.take_skipped()
        if not baseline_rows:
            raise DataError(f"{args.data} [{args.split}] has no frame that could be scored")
        for c in candidates:
            write_csv(out / f"per_image_{c.slug}.csv", c.rows)
            example_figure(out / f"examples_{c.slug}.png", split, c, crop=args.crop, flip=not args.no_flip)
        figures = [out / "examples_*.png"]
        if len(candidates) > 1:
            figures.append(out / "comparison.png")
            comparison_figure(figures[-1], split, candidates, count=args.compare_frames, flip=not args.no_flip)
        if photos:
            figures.append(out / "photos.png")
            photo_figure(figures[-1], photos, candidates, flip=not args.no_flip)
        baseline = {"label": baseline_label, "depth_m": baseline_m, "rows": baseline_rows}
        print(write_report(out, args, candidates, baseline, crops_used, skipped))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output file or folder cannot be written
        print(f"error: cannot write {err.filename} ({err.strerror})", file=sys.stderr)
        return 2
    if skipped:
        print(f"skipped {len(skipped)} frames:\n  " + "\n  ".join(skipped), file=sys.stderr)
    print(f"wrote {out}/table.md, table.csv, metrics.json and per_image_*.csv", file=sys.stderr)
    print("wrote figures: " + ", ".join(str(f) for f in figures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
