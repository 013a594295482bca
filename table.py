"""The benchmark table of evaluate.py: the published NYU Depth V2 results (nyu.PUBLISHED) beside each evaluated
model and two kinds of constant depth (`Constant`), written as table.md, table.csv and metrics.json.

A candidate is evaluate.Candidate: label, slug, depth_scale, rows (one dict of ERROR_METRICS per image) and
ms_per_image. Every number is a mean over images of per-image errors.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

import nyu
from loss import ERROR_METRICS

TABLE_METRICS = nyu.PUBLISHED_METRICS  # the metrics the published rows report
TABLE_COLUMNS = ("method", "evaluated on", *TABLE_METRICS, "ms/image")
# Constant.kind -> its row label. A fair baseline is a depth a model could know: the mean of the frames it trained
# on, as train.py recorded it in the model, or, for a model that recorded none, the data's train split mean. The
# evaluated frames' own mean is the best single depth only in hindsight: no model can know it.
CONSTANT_LABELS = {
    "training_mean": "constant: training-set mean depth of {models} ({depth_m:.2f} m), the fair baseline",
    "train_split_mean": "constant: this data's train-split mean depth ({depth_m:.2f} m), the fair baseline if "
                        "{models} trained on it (no training mean recorded in the model)",
    "frames_mean": "constant: these frames' own mean depth ({depth_m:.2f} m), known only in hindsight",
}


SCALE_SHIFT_LABEL = "per-image scale and shift in inverse depth (least squares)"


def names_text(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


@dataclasses.dataclass
class Constant:
    """One depth in metres predicted everywhere, scored like a model (evaluate.score_split fills rows, one dict of
    ERROR_METRICS per image). kind: a key of CONSTANT_LABELS; models: the labels of the models whose fair
    baseline it is (none for the hindsight constant); data: the training frames a training mean is over, as the
    models recorded them (model.train_data_of; None when they did not)."""

    kind: str
    depth_m: float
    models: list[str] = dataclasses.field(default_factory=list)
    rows: list = dataclasses.field(default_factory=list)
    data: str | None = None

    @property
    def label(self) -> str:
        return CONSTANT_LABELS[self.kind].format(depth_m=self.depth_m, models=names_text(self.models))


def mean_over_images(rows: list[dict], prefix: str = "") -> dict[str, float]:
    """{metric: mean over rows of row[prefix + metric]} for every metric in ERROR_METRICS."""
    return {k: float(np.mean([row[prefix + k] for row in rows])) for k in ERROR_METRICS}


def _cell(column: str, value) -> str:
    """A table cell: '-' for a number not published, ms to 0.1, metrics to 0.001, text as is."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if column == "ms/image" else f"{value:.3f}"
    return str(value)


def table_rows(candidates, *, data_label, constants: list[Constant], median_scaling, scale_shift=False) -> list[dict]:
    """The benchmark table as dicts keyed by TABLE_COLUMNS: published rows, this run's, then the constants."""
    rows = [{**row, "evaluated on": nyu.PUBLISHED_ON, "ms/image": None} for row in nyu.PUBLISHED]
    for c in candidates:
        ms = c.ms_per_image
        rows.append({"method": c.label, "evaluated on": data_label, **mean_over_images(c.rows), "ms/image": ms})
        if median_scaling:
            rows.append({"method": f"{c.label}, per-image median scaling", "evaluated on": data_label,
                         **mean_over_images(c.rows, "median_"), "ms/image": ms})
        if scale_shift:  # evaluate.py --align scale-shift
            rows.append({"method": f"{c.label}, {SCALE_SHIFT_LABEL}", "evaluated on": data_label,
                         **mean_over_images(c.rows, "scale_shift_"), "ms/image": ms})
    rows += [{"method": c.label, "evaluated on": data_label, **mean_over_images(c.rows)} for c in constants]
    return [{column: row.get(column) for column in TABLE_COLUMNS} for row in rows]


def markdown_table(rows: list[dict]) -> str:
    """table_rows as a Markdown table, one line per row."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + " --- |" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_cell(c, row[c]) for c in TABLE_COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path, rows: list[dict]) -> None:
    """rows (dicts with the same keys, the first one's order) as a CSV file with a header line."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_report(out: Path, candidates: list, constants: list[Constant], *, data: str, split: str, flip: bool,
                 median_scaling: bool, scale_shift: bool, crops_used: set[str], skipped: list[str],
                 json_path=None) -> str:
    """Write table.md, table.csv and metrics.json (and json_path, evaluate.py's --json) to `out`; returns the
    Markdown. metrics.json holds each table row under "table" (keyed by TABLE_COLUMNS, numbers unrounded) beside
    the per-model details. data, split: what was evaluated (evaluate.py's --data and --split); flip, median_scaling,
    scale_shift: the protocol's options, each adding what it says (--no-flip, --median-scaling, --align
    scale-shift); crops_used: the labels of the crops scored in; skipped: the frames left out, each with why."""
    images = len(candidates[0].rows)
    data_label = f"{data} [{split}], {images} images"
    rows = table_rows(candidates, data_label=data_label, constants=constants, median_scaling=median_scaling,
                      scale_shift=scale_shift)
    scale = candidates[0].depth_scale
    notes = [
        f"Rows marked '{nyu.PUBLISHED_ON}' are numbers as published by each paper on the official NYU Depth V2 test "
        "split, not recomputed here; rows on other data are not comparable with them.",
        f"This run: {data_label}; crop: {'; '.join(sorted(crops_used))}; scored pixels: ground truth within "
        f"the model's depth range ({scale.min_depth_m:g}-{scale.max_depth_m:g} m for the first model); "
        f"aggregation: mean over images of per-image errors; flip test-time augmentation: {'on' if flip else 'off'}; "
        "ms/image: median wall time of predict_depth_m per image at batch 1.",
        "Constant rows predict one depth everywhere, scored on the first model's pixels: a fair baseline is the mean "
        "depth of a model's training frames (recorded by train.py), what a model could know; the evaluated frames' "
        "own mean is known only in hindsight.",
    ]
    notes += [f"Training frames of {names_text(c.models)}, whose mean depth is their fair baseline: {c.data}."
              for c in constants if c.data]
    if skipped:
        notes.append(f"Skipped {len(skipped)} frames: " + "; ".join(skipped))
    markdown = "# Depth evaluation\n\n" + "\n\n".join(notes) + "\n\n" + markdown_table(rows) + "\n"
    (out / "table.md").write_text(markdown)
    write_csv(out / "table.csv", rows)
    metrics = {
        "data": data, "split": split, "images": images, "crop": sorted(crops_used),
        "aggregation": "mean over images", "flip": flip, "skipped": skipped,
        "models": {
            c.slug: {
                "path": c.label, "depth_scale": c.depth_scale.to_config(), "metrics": mean_over_images(c.rows),
                **({"median_scaled": mean_over_images(c.rows, "median_")} if median_scaling else {}),
                **({"scale_shift_aligned": mean_over_images(c.rows, "scale_shift_")} if scale_shift else {}),
                "ms_per_image": c.ms_per_image,
            }
            for c in candidates
        },
        "constants": [{"kind": c.kind, "label": c.label, "depth_m": c.depth_m, "models": c.models, "data": c.data,
                       "metrics": mean_over_images(c.rows)} for c in constants],
        "published": {"evaluated_on": nyu.PUBLISHED_ON, "rows": nyu.PUBLISHED},
        "table": rows,  # every row of table.md and table.csv, in their order, the median-scaled ones included
    }
    for path in [out / "metrics.json"] + ([Path(json_path)] if json_path else []):
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    return markdown
