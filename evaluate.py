"""Measure trained depth models on a test split with the standard NYU Depth V2 protocol, beside published numbers.

    python evaluate.py --model runs/unet/model.keras --model runs/transfer/model.keras --data data/synth \
        --photos ../shared/nyu_examples

Per test image: predict at the ground truth's size (flip test-time augmentation on by default), clip to the
model's depth range, and score inside a crop over the pixels whose ground truth lies in that range; the
table reports the mean over images. Beside the models it scores two kinds of constant depth: the fair baseline,
the mean training depth each model recorded (train.py), and the evaluated frames' own mean, known only in
hindsight. The table is printed and written to --out as table.md and table.csv, with metrics.json,
per_image_<model>.csv and examples_<model>.png (best, median and worst images by abs_rel). With two or more
models it also writes comparison.png: --compare-frames test images, evenly spaced over the evaluated ones, as
RGB | ground truth | each model's prediction with its abs_rel there. --photos (photographs without ground truth)
adds photos.png: RGB | each model's prediction for up to --max-photos of them.
"""
from __future__ import annotations

import quiet  # first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import dataclasses
import re
import sys
import time
from pathlib import Path

import keras
import numpy as np

import figures
from cli import user_error
import table
from data import frames
from depth import DepthScale
from layouts import DataError, Split, add_depth_units_argument, evenly_spaced, open_source
from backends import add_trust_argument, load_depth_model, recorded_mean_depth_m
from model import train_data_of
from photos import read_photos
from predict import NonFiniteDepth, predict_depth_m
from protocol import CROP_CHOICES, compute_errors, frame_crop, median_scaled, scale_shift_aligned, valid_mask
from splits import SkipLog, nothing_usable

BASELINE_FRAMES = 200  # train-split frames (evenly spaced) averaged for models that recorded no training mean
MAX_PHOTOS = 6  # photographs without ground truth in photos.png (and the notebook's figure)


# ---------------------------------------------------------------------------
# Evaluating a split
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Candidate:
    """A model under evaluation: its label in the table, file-name slug, the mean training depth in metres it
    recorded (backends.recorded_mean_depth_m; None if none), which frames that mean is over (a Keras model's
    model.train_data_of, e.g. a mixture's datasets; None if not recorded), and per-image results."""

    label: str
    slug: str
    model: keras.Model
    depth_scale: DepthScale
    train_mean_depth_m: float | None = None
    train_data: str | None = None
    rows: list = dataclasses.field(default_factory=list)  # per image: frame, index, ms, ERROR_METRICS[, median_*]

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


def mean_depth_m(split: Split, max_frames: int) -> float:
    """Mean ground-truth depth in metres over the valid (> 0) pixels of at most max_frames evenly spaced frames;
    DataError (splits.nothing_usable) when none of them is readable or has a valid pixel."""
    sample = split.subset(evenly_spaced(len(split), max_frames))
    total, count, seen = 0.0, 0, 0
    skipped = SkipLog()
    stream = frames(sample, skipped=skipped)
    for frame in quiet.progress_bar(stream, total=len(sample), desc=f"{split.name} mean depth", unit="frame"):
        depth = frame["depth"].numpy()
        total, count = total + float(depth[depth > 0].sum(dtype=np.float64)), count + int((depth > 0).sum())
        seen += 1
    if seen == 0:
        raise nothing_usable(sample, skipped, len(sample))
    if count == 0:
        raise nothing_usable(sample, skipped, len(sample), "has a valid depth pixel (all 0, NaN or negative)")
    return total / count


def scored_frames(split: Split, candidates: list[Candidate], crop: str, crops_used: set[str], desc: str,
                  skipped: SkipLog):
    """Yield (name, index, RGB uint8 [H, W, 3], ground truth [H, W] metres, [valid mask [H, W] per candidate])
    for each frame of split, adding its crop's label to crops_used. Frames whose crop holds no valid ground truth
    for some candidate are left out, recorded by name in `skipped` with the unreadable ones (data.frames)."""
    for frame in quiet.progress_bar(frames(split, skipped=skipped), total=len(split), desc=desc, unit="image"):
        rgb, gt = frame["rgb"].numpy(), frame["depth"].numpy()[..., 0]  # uint8 [H, W, 3], metres [H, W]
        index = int(frame["index"])
        box, crop_label = frame_crop(crop, gt.shape, split.crop)
        crops_used.add(crop_label)
        valid = [valid_mask(gt, c.depth_scale, box) for c in candidates]
        if not all(v.any() for v in valid):
            scale = candidates[0].depth_scale
            skipped.record(split.describe(index),
                           f"no ground truth in {scale.min_depth_m:g}-{scale.max_depth_m:g} m inside the crop")
            continue
        yield split.frame_name(index), index, rgb, gt, valid


def scored_mean_depth_m(split: Split, candidates: list[Candidate], crop: str) -> float:
    """Mean ground truth in metres over the pixels score_split scores the constants on (the first candidate's valid
    pixels of every frame it scores): the best constant in hindsight. DataError when no frame can be scored."""
    total, count, crops = 0.0, 0, set()
    skipped = SkipLog()  # this pass's own: score_split's pass skips (and reports) the same frames again
    for *_, gt, valid in scored_frames(split, candidates, crop, crops, f"{split.name} mean depth", skipped):
        total, count = total + float(gt[valid[0]].sum(dtype=np.float64)), count + int(valid[0].sum())
    if count == 0:  # crops holds a label for every frame read, scored or not
        raise nothing_usable(split, skipped, len(split), "could be scored" if crops else "is readable")
    return total / count


def score_split(
    split: Split, candidates: list[Candidate], *, crop: str, flip: bool, median_scaling: bool,
    constants: list[table.Constant], align: str | None = None, skipped: SkipLog | None = None,
) -> set[str]:
    """Stream the split's frames once, scoring every candidate and constant on each; their rows are filled in.

    align "scale-shift" adds each image's errors after scale_shift_aligned (keys scale_shift_*).
    Returns the labels of the crops used. Each constant (its depth_m everywhere) is scored on the first
    candidate's valid pixels. Frames unreadable or whose crop holds no valid ground truth are left out, each
    recorded in `skipped` (None: not kept).
    Raises NonFiniteDepth, after the whole split, if a model predicted NaN or inf anywhere.
    """
    crops_used = set()
    nonfinite = {c.label: 0 for c in candidates}  # images each model predicted non-finite depth for
    skipped = SkipLog() if skipped is None else skipped
    for name, index, rgb, gt, valid in scored_frames(split, candidates, crop, crops_used, "evaluate", skipped):
        for candidate, scored in zip(candidates, valid):
            start = time.perf_counter()
            pred = predict_depth_m(candidate.model, rgb, candidate.depth_scale, flip=flip)  # [H, W] metres
            nonfinite[candidate.label] += not np.isfinite(pred).all()
            row = {"frame": name, "index": index, "ms": 1000.0 * (time.perf_counter() - start)}
            row.update(compute_errors(gt, pred, scored))
            if median_scaling:
                scaled = compute_errors(gt, median_scaled(gt, pred, scored), scored)
                row.update({f"median_{k}": v for k, v in scaled.items()})
            if align == "scale-shift":
                aligned = compute_errors(gt, scale_shift_aligned(gt, pred, scored, candidate.depth_scale), scored)
                row.update({f"scale_shift_{k}": v for k, v in aligned.items()})
            candidate.rows.append(row)
        for constant in constants:
            constant.rows.append({"frame": name, "index": index,
                                  **compute_errors(gt, np.full_like(gt, constant.depth_m), valid[0])})
    for label, bad in nonfinite.items():
        if bad:
            raise NonFiniteDepth(label, bad, len(candidates[0].rows))
    return crops_used


def fair_baselines(candidates: list[Candidate], source, max_frames: int) -> tuple[list[table.Constant], str | None]:
    """(the fair constant baselines, a notice or None): one Constant per distinct training mean (to the
    centimetre) the candidates recorded, naming them; for candidates that recorded none, the mean depth of at
    most max_frames frames of the data's train split if it has one, else no row and a one-line notice saying so."""
    # Grouped to the centimetre the label shows: models trained on the same frames record means that differ in
    # the last digits (a UNet's full-resolution targets against a transfer model's half-resolution ones), and
    # two rows labelled alike would read as a bug. Each row scores its first model's recorded value.
    by_cm, unrecorded = {}, []
    for c in candidates:
        if c.train_mean_depth_m is None:
            unrecorded.append(c.label)
        else:
            _, labels, data = by_cm.setdefault(round(c.train_mean_depth_m, 2), (c.train_mean_depth_m, [], []))
            labels.append(c.label)
            if c.train_data and c.train_data not in data:
                data.append(c.train_data)
    constants = [table.Constant("training_mean", depth_m, labels, data=" / ".join(data) or None)
                 for depth_m, labels, data in by_cm.values()]
    if unrecorded and "train" in source.splits:
        train_mean_m = mean_depth_m(source.split("train"), max_frames)
        constants.append(table.Constant("train_split_mean", train_mean_m, unrecorded))
    elif unrecorded:
        return constants, (f"note: no fair-baseline row for {table.names_text(unrecorded)}: no training mean depth "
                           "recorded in the model (saved before train.py recorded it) and no train split in the data")
    return constants, None


def constants_to_score(candidates: list[Candidate], source, split: Split, *, crop: str,
                       max_frames: int) -> tuple[list[table.Constant], str | None]:
    """(the constants score_split scores on split, a notice or None): fair_baselines, then the best constant in
    hindsight, split's own mean depth over the pixels scored (scored_mean_depth_m)."""
    constants, notice = fair_baselines(candidates, source, max_frames)
    return constants + [table.Constant("frames_mean", scored_mean_depth_m(split, candidates, crop))], notice


# ---------------------------------------------------------------------------
# Figures (gathered here, drawn by figures.py)
# ---------------------------------------------------------------------------

def predicted_frames(split: Split, indices, candidates: list[Candidate], *, flip: bool):
    """Yield (RGB uint8 [H, W, 3], ground truth [H, W] metres, [prediction [H, W] metres per candidate]) for
    the frames of `split` at `indices`, read and predicted again, so evaluation never holds more than one."""
    for frame in frames(split.subset(indices), strict=True):
        rgb, gt = frame["rgb"].numpy(), frame["depth"].numpy()[..., 0]
        yield rgb, gt, [predict_depth_m(c.model, rgb, c.depth_scale, flip=flip) for c in candidates]


def example_figure(path, split: Split, candidate: Candidate, *, crop: str, flip: bool) -> None:
    """Save figures.examples_figure of the best, median and worst images by abs_rel, errors over the scored pixels."""
    ranked = sorted(candidate.rows, key=lambda row: row["abs_rel"])
    picks = {"best": ranked[0], "median": ranked[len(ranked) // 2], "worst": ranked[-1]}
    indices = [row["index"] for row in picks.values()]
    rows = []
    for (rank, row), (rgb, gt, [pred]) in zip(picks.items(), predicted_frames(split, indices, [candidate], flip=flip)):
        scored = valid_mask(gt, candidate.depth_scale, frame_crop(crop, gt.shape, split.crop)[0])
        title = f"{rank}: {row['frame']}\nabs_rel {row['abs_rel']:.3f}, rmse {row['rmse']:.3f} m"
        rows.append(figures.ExampleRow(title, rgb, gt, pred, scored))
    title = (f"{candidate.label} on {split.source} [{split.name}]: best, median and worst of "
             f"{len(candidate.rows)} images by abs_rel (grey: not scored)")
    figures.examples_figure(rows, title).savefig(path)


def comparison_figure(path, split: Split, candidates: list[Candidate], *, crop: str, count: int, flip: bool) -> None:
    """Save figures.comparison_figure of `count` evaluated images, evenly spaced over them (chosen by position,
    not by any score), each model's panel titled with its abs_rel there, colours scaled over the first model's
    scored pixels. Every candidate holds a row per evaluated frame, in the same order, so the first candidate's
    rows name the frames."""
    positions = evenly_spaced(len(candidates[0].rows), count)
    indices = [candidates[0].rows[p]["index"] for p in positions]
    rows = [
        figures.ComparisonRow(candidates[0].rows[position]["frame"], rgb, gt, preds,
                              [f"abs_rel {c.rows[position]['abs_rel']:.3f}" for c in candidates],
                              valid_mask(gt, candidates[0].depth_scale, frame_crop(crop, gt.shape, split.crop)[0]))
        for position, (rgb, gt, preds) in zip(positions, predicted_frames(split, indices, candidates, flip=flip))
    ]
    title = (f"{len(candidates)} models on {split.source} [{split.name}]: {len(rows)} of "
             f"{len(candidates[0].rows)} images, evenly spaced (grey: no ground truth)")
    figures.comparison_figure(rows, [c.label for c in candidates], title).savefig(path)


def photo_figure(path, photos: list[tuple[str, np.ndarray]], candidates: list[Candidate], *, flip: bool) -> None:
    """Save figures.photo_figure of photographs without ground truth, (name, RGB uint8 [H, W, 3]) as
    read_photos returns them, each predicted at its own size by every candidate."""
    preds = [[predict_depth_m(c.model, rgb, c.depth_scale, flip=flip) for c in candidates] for _, rgb in photos]
    title = f"{len(photos)} photographs without ground truth"
    figures.photo_figure(photos, preds, [c.label for c in candidates], title).savefig(path)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_argument_group("what to evaluate")
    what.add_argument("--model", action="append", required=True,
                      help="a trained model (.keras) or its export by export.py (SavedModel folder, .tflite, .onnx); "
                           "repeat to evaluate several into one table")
    add_trust_argument(what)
    what.add_argument("--data", required=True, help="dataset path, in any layout layouts.py reads (e.g. data/synth)")
    what.add_argument("--tfds-data-dir", default=None,
                      help="where a --data tfds:NAME dataset is prepared (default: TensorFlow Datasets' own)")
    what.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    add_depth_units_argument(what)
    what.add_argument("--limit", type=int, default=None, help="evaluate only the first N frames (default: all)")
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--crop", choices=CROP_CHOICES, default="auto",
                          help="where to score: " + "; ".join(f"{k}: {v}" for k, v in CROP_CHOICES.items()))
    protocol.add_argument("--no-flip", action="store_true", help="skip the flip test-time augmentation")
    protocol.add_argument("--median-scaling", action="store_true",
                          help="add a row per model with per-image median scaling (DenseDepth's second row)")
    protocol.add_argument("--align", choices=["scale-shift"], default=None,
                          help="scale-shift: add a row per model aligned per image by least squares in inverse depth "
                               "(MiDaS's and Marigold's protocol for relative depth, e.g. kerashub.py's models)")
    protocol.add_argument("--baseline-frames", type=int, default=BASELINE_FRAMES,
                          help="train-split frames (evenly spaced) averaged for the fair baseline of a model "
                               f"that recorded no training mean depth (default: {BASELINE_FRAMES})")
    output = parser.add_argument_group("output")
    output.add_argument("--out", default="outputs/evaluate",
                        help="folder for table.md, table.csv, metrics.json, per-image CSVs and figures "
                             "(default: outputs/evaluate)")
    output.add_argument("--json", default=None, help="also write the metrics JSON to this file")
    drawn = parser.add_argument_group("figures (examples_<model>.png are always written)")
    drawn.add_argument("--compare-frames", type=int, default=3,
                       help="with two or more --model: test images in comparison.png, evenly spaced over the "
                            "evaluated ones, one row each with every model's prediction and abs_rel (default: 3)")
    drawn.add_argument("--photos", action="append", default=None, metavar="DIR_OR_GLOB",
                       help="photographs without ground truth (image files, folders or quoted glob patterns; "
                            "repeat for more) to predict with every model into photos.png")
    drawn.add_argument("--max-photos", type=int, default=MAX_PHOTOS,
                       help=f"photographs in photos.png, the first readable ones by file name (default: {MAX_PHOTOS})")
    args = parser.parse_args(argv)
    for flag in ("limit", "baseline_frames", "compare_frames", "max_photos"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return args


def load_candidates(paths, *, trust_saved_model: bool = False) -> list[Candidate]:
    """Load each model with its DepthScale (backends.load_depth_model); raises FileNotFoundError or ValueError
    naming a bad file."""
    candidates = []
    for path, slug in zip(paths, model_slugs(paths)):
        model, depth_scale = load_depth_model(path, trust_saved_model=trust_saved_model)
        train_data = train_data_of(model) if isinstance(model, keras.Model) else None  # exports keep no record
        candidates.append(Candidate(path, slug, model, depth_scale, recorded_mean_depth_m(model), train_data))
    return candidates


def main(args: argparse.Namespace) -> int:
    """Run the command line; returns the exit code (2 for a bad dataset, model, --photos or output path, with one
    sentence). The photographs are read before evaluating, so a bad --photos fails at once."""
    try:
        candidates = load_candidates(args.model, trust_saved_model=args.trust_saved_model)
    except (FileNotFoundError, ValueError) as err:  # load_model's and depth_scale_of's one-sentence errors
        return user_error(f"{err}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        source = open_source(args.data, args.depth_units_per_metre, args.tfds_data_dir)
        split = source.split(args.split)
        if args.limit is not None and args.limit < len(split):
            split = split.subset(range(args.limit))  # the first N: frames read ahead past them are not counted
        photos = read_photos(args.photos, args.max_photos) if args.photos else []
        if args.photos and not photos:
            raise DataError(f"--photos {' '.join(args.photos)} holds no readable image; give image files, folders or globs")
        constants, notice = constants_to_score(candidates, source, split, crop=args.crop,
                                               max_frames=args.baseline_frames)
        left_out = SkipLog()
        crops_used = score_split(split, candidates, crop=args.crop, flip=not args.no_flip,
                                 median_scaling=args.median_scaling, constants=constants, align=args.align,
                                 skipped=left_out)
        skipped = left_out.take()
        for c in candidates:
            table.write_csv(out / f"per_image_{c.slug}.csv", c.rows)
        # The numbers first: a figure that fails to draw never costs the scores it took the whole split to get.
        print(table.write_report(out, candidates, constants, data=args.data, split=args.split, flip=not args.no_flip,
                                 median_scaling=args.median_scaling, scale_shift=args.align == "scale-shift",
                                 crops_used=crops_used, skipped=skipped, json_path=args.json))
        for c in candidates:
            example_figure(out / f"examples_{c.slug}.png", split, c, crop=args.crop, flip=not args.no_flip)
        written = [out / "examples_*.png"]
        if len(candidates) > 1:
            written.append(out / "comparison.png")
            comparison_figure(written[-1], split, candidates, crop=args.crop, count=args.compare_frames,
                              flip=not args.no_flip)
        if photos:
            written.append(out / "photos.png")
            photo_figure(written[-1], photos, candidates, flip=not args.no_flip)
    except (DataError, NonFiniteDepth) as err:
        return user_error(f"{err}")
    except OSError as err:  # an output file or folder cannot be written
        return user_error(f"cannot write {err.filename} ({err.strerror})")
    if skipped:
        print(f"skipped {len(skipped)} frames:\n  " + "\n  ".join(skipped), file=sys.stderr)
    if notice:
        print(notice, file=sys.stderr)
    print(f"wrote {out}/table.md, table.csv, metrics.json and per_image_*.csv", file=sys.stderr)
    print("wrote figures: " + ", ".join(str(f) for f in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
