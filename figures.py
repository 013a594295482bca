"""Every picture of depth the project draws, in one colour map for depth and one for errors.

TensorBoard's validation panels (`colorize`), predict.py's colour previews, evaluate.py's figures and the
notebook's all come from here. Figures are drawn on Matplotlib's Agg canvas, never through pyplot, so they
need no display and leave no global figure state behind; each function returns its `Figure`, which the caller
saves (`fig.savefig(path)`) or shows in a notebook. Depth is in metres; in ground truth, 0 means no depth.
"""
from __future__ import annotations

import dataclasses
import re

import matplotlib
import matplotlib.colors
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DEPTH_CMAP = "plasma_r"  # near = bright yellow, far = dark purple
ERROR_CMAP = "inferno"  # absolute error: 0 = black, the largest = pale yellow
NO_DATA_GREY = "0.85"  # the axes' background, which NaN pixels (no ground truth, not scored) show through
PREVIEW_SIDE = 600  # pixels: the longest side of depth_color_figure's map
HEADING_CHARS = 30  # a column heading's longest line: about a 3.2-inch panel's width at 10 points
# Every title and label is drawn as plain text: they carry users' strings (file names, model and dataset paths), and
# Matplotlib would read a '$' in them ("runs$$/model.keras") as mathtext, or TeX under text.usetex, and fail to draw.
PLAIN_TEXT = {"parse_math": False, "usetex": False}


# ---------------------------------------------------------------------------
# Colours and panels
# ---------------------------------------------------------------------------

def colorize(depth_m, lo: float, hi: float) -> np.ndarray:
    """Depth [..., H, W] metres -> RGB float32 [..., H, W, 3] in [0, 1] in DEPTH_CMAP: lo metres takes the
    map's near end, hi its far end, depths beyond them are clipped to the ends, and NaN (no depth) is
    NO_DATA_GREY, as in every figure (TensorBoard's panels)."""
    depth_m = np.asarray(depth_m, np.float64)
    normalized = np.clip((depth_m - lo) / (hi - lo), 0.0, 1.0)
    rgb = matplotlib.colormaps[DEPTH_CMAP](normalized)[..., :3]
    rgb[np.isnan(depth_m)] = matplotlib.colors.to_rgb(NO_DATA_GREY)
    return rgb.astype(np.float32)


def holes_as_nan(gt_m: np.ndarray) -> np.ndarray:
    """Ground truth [H, W] metres with NaN where it has none (0), so the holes show as NO_DATA_GREY."""
    return np.where(gt_m > 0, gt_m, np.nan)


def depth_limits(depth_maps) -> tuple[float, float]:
    """(lowest, highest) depth in metres over depth maps of any sizes, NaN ignored: one colour scale for all."""
    return min(float(np.nanmin(d)) for d in depth_maps), max(float(np.nanmax(d)) for d in depth_maps)


def panel_grid(rows: int, columns: int, panel_hw, title_lines: int = 1) -> tuple[Figure, np.ndarray]:
    """(figure, axes [rows, columns]) on an Agg canvas: panels about 3.2 inches wide at the aspect of
    panel_hw = (H, W) pixels, with title_lines of title above each row, no ticks, NaN in NO_DATA_GREY."""
    height, width = panel_hw
    row_in = 3.2 * height / width + 0.15 + 0.15 * title_lines
    fig = Figure(figsize=(3.75 * columns, rows * row_in + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_facecolor(NO_DATA_GREY)
    return fig, axes


def show_depth(ax, depth_m: np.ndarray, limits):
    """Draw depth [H, W] metres on ax in DEPTH_CMAP over limits = (low, high) metres; returns the image."""
    return ax.imshow(depth_m, cmap=DEPTH_CMAP, vmin=limits[0], vmax=limits[1])


def depth_colorbar(fig: Figure, image, axes) -> None:
    """One colour bar in metres for `image`'s scale, beside `axes` (the depth panels sharing it)."""
    fig.colorbar(image, ax=axes, label="depth (m)", shrink=0.8)


def wrapped(label: str, width: int = HEADING_CHARS) -> str:
    """`label` in lines of at most `width` characters, broken only after a '/' (a part longer than `width` keeps
    its own line): model paths as column headings would otherwise run into the next column."""
    lines = [""]
    for part in re.split(r"(?<=/)", label):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def line_count(text: str) -> int:
    return text.count("\n") + 1


def column_titles(axes, headings) -> None:
    """Title the top row of axes [rows, columns] with `headings`, left to right."""
    for ax, heading in zip(axes[0], headings):
        ax.set_title(heading, fontsize=10, **PLAIN_TEXT)


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------

def downscaled(depth_m: np.ndarray, longest: int) -> np.ndarray:
    """Depth [H, W] metres box-averaged by the smallest whole factor that brings its longest side to at most
    `longest` pixels (itself when it is already that small)."""
    factor = -(-max(depth_m.shape) // longest)
    if factor == 1:
        return depth_m
    fr, fc = min(factor, depth_m.shape[0]), min(factor, depth_m.shape[1])
    h, w = depth_m.shape[0] // fr, depth_m.shape[1] // fc
    # A band of rows at a time, never a copy of the whole map (320 MB at 80 megapixels); leftover edges dropped.
    return np.stack([depth_m[i * fr:(i + 1) * fr, :w * fc].reshape(fr, w, fc).mean(axis=(0, 2)) for i in range(h)])


def depth_color_figure(depth_m: np.ndarray, title: str = "") -> Figure:
    """One depth map [H, W] metres, colour-mapped over its own range with a colour bar in metres, its longest
    side PREVIEW_SIDE pixels (predict.py's X_depth_color.png), drawn from a map downscaled to about that size:
    Matplotlib's own resampling of an 80-megapixel map takes gigabytes."""
    h, w = depth_m.shape
    inches = PREVIEW_SIDE / 100 / max(h, w)
    fig = Figure(figsize=(w * inches + 1.4, h * inches + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    limits = (float(depth_m.min()), float(depth_m.max()))
    shown = show_depth(ax, downscaled(depth_m, PREVIEW_SIDE), limits)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9, **PLAIN_TEXT)
    fig.colorbar(shown, ax=ax, label="depth (m)", shrink=0.9)
    return fig


@dataclasses.dataclass
class ExampleRow:
    """One image of examples_figure: a prediction against its ground truth."""

    title: str  # the row's label, left of the RGB
    rgb: np.ndarray  # uint8 [H, W, 3]
    gt_m: np.ndarray  # [H, W] metres, 0 = no ground truth
    pred_m: np.ndarray  # [H, W] metres
    scored: np.ndarray  # bool [H, W]: the pixels whose error is shown


def examples_figure(rows: list[ExampleRow], title: str) -> Figure:
    """RGB | ground truth | prediction | |prediction - ground truth| over the scored pixels, a row per image;
    the depth panels share one colour scale in metres over the scored pixels (a sensor's stray 13 m reading outside
    the depth range takes the far colour, not the scale), the error panels one in ERROR_CMAP from 0."""
    gts = [holes_as_nan(row.gt_m) for row in rows]
    errors = [np.where(row.scored, np.abs(row.pred_m - row.gt_m), np.nan) for row in rows]
    limits = depth_limits([depth[row.scored] for row in rows for depth in (row.gt_m, row.pred_m)])
    error_hi = max(float(np.nanmax(error)) for error in errors)

    fig, axes = panel_grid(len(rows), 4, rows[0].gt_m.shape)
    for ax_row, row, gt, error in zip(axes, rows, gts, errors):
        ax_row[0].imshow(row.rgb)
        ax_row[0].set_ylabel(row.title, fontsize=9, **PLAIN_TEXT)
        depth_image = show_depth(ax_row[1], gt, limits)
        show_depth(ax_row[2], row.pred_m, limits)
        error_image = ax_row[3].imshow(error, cmap=ERROR_CMAP, vmin=0.0, vmax=error_hi)
    column_titles(axes, ("RGB", "ground truth", "prediction", "|prediction - ground truth|"))
    depth_colorbar(fig, depth_image, axes[:, 1:3])
    fig.colorbar(error_image, ax=axes[:, 3], label="absolute error (m)", shrink=0.8)
    fig.suptitle(title, fontsize=11, **PLAIN_TEXT)
    return fig


@dataclasses.dataclass
class ComparisonRow:
    """One image of comparison_figure: its ground truth and every model's prediction."""

    name: str  # the row's label, left of the RGB
    rgb: np.ndarray  # uint8 [H, W, 3]
    gt_m: np.ndarray  # [H, W] metres, 0 = no ground truth
    preds_m: list  # [H, W] metres per model
    captions: list  # a title per model's panel (its score on this image)
    scored: np.ndarray | None = None  # bool [H, W]: the pixels scored, which set the colour scale (None: every one)


def comparison_figure(rows: list[ComparisonRow], labels: list[str], title: str) -> Figure:
    """RGB | ground truth | each model's prediction, a row per image, the model's label heading its column
    once; every depth panel shares one colour scale in metres, over each row's scored pixels where it gives them.
    With no models, a dataset's frames."""
    gts = [holes_as_nan(row.gt_m) for row in rows]
    shown = [np.ones(row.gt_m.shape, bool) if row.scored is None else row.scored for row in rows]
    limits = depth_limits([depth[where] for row, gt, where in zip(rows, gts, shown) for depth in (gt, *row.preds_m)])

    headings = [wrapped(label) for label in labels]
    fig, axes = panel_grid(len(rows), 2 + len(labels), rows[0].gt_m.shape,
                           title_lines=1 + max(map(line_count, headings), default=1))
    for i, (ax_row, row, gt) in enumerate(zip(axes, rows, gts)):
        ax_row[0].imshow(row.rgb)
        ax_row[0].set_ylabel(row.name, fontsize=9, **PLAIN_TEXT)
        depth_image = show_depth(ax_row[1], gt, limits)
        for ax, heading, pred, caption in zip(ax_row[2:], headings, row.preds_m, row.captions):
            show_depth(ax, pred, limits)
            ax.set_title(f"{heading}\n{caption}" if i == 0 else caption, fontsize=10, **PLAIN_TEXT)
    column_titles(axes, ("RGB", "ground truth"))
    depth_colorbar(fig, depth_image, axes[:, 1:])
    fig.suptitle(title, fontsize=11, **PLAIN_TEXT)
    return fig


def photo_figure(photos: list[tuple[str, np.ndarray]], preds_m: list[list[np.ndarray]], labels: list[str],
                 title: str) -> Figure:
    """RGB | each model's prediction for photographs without ground truth, every depth panel on one colour
    scale in metres. photos: (name, RGB uint8 [H, W, 3]); preds_m: per photo, [H, W] metres per model."""
    limits = depth_limits([pred for row in preds_m for pred in row])
    tallest_hw = max((rgb.shape[:2] for _, rgb in photos), key=lambda hw: hw[0] / hw[1])  # sets the row height

    headings = ["RGB", *map(wrapped, labels)]
    fig, axes = panel_grid(len(photos), 1 + len(labels), tallest_hw, title_lines=max(map(line_count, headings)))
    for ax_row, (name, rgb), row_preds in zip(axes, photos, preds_m):
        ax_row[0].imshow(rgb)
        ax_row[0].set_ylabel(name, fontsize=9, **PLAIN_TEXT)
        for ax, pred in zip(ax_row[1:], row_preds):
            depth_image = show_depth(ax, pred, limits)
    column_titles(axes, headings)
    depth_colorbar(fig, depth_image, axes[:, 1:])
    fig.suptitle(title, fontsize=11, **PLAIN_TEXT)
    return fig


def depth_histogram(gt_m: np.ndarray, pred_m: np.ndarray, depth_range_m: tuple[float, float]) -> Figure:
    """Histograms of ground-truth and predicted depths (metres, any shapes: every value counts) over
    depth_range_m = (min, max) in 60 bins, overlaid: a model that learned only the mean shows a spike."""
    fig = Figure(figsize=(8, 3.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bins = np.linspace(*depth_range_m, 60)
    ax.hist(np.ravel(gt_m), bins=bins, alpha=0.6, label="ground truth")
    ax.hist(np.ravel(pred_m), bins=bins, alpha=0.6, label="prediction")
    ax.set_xlabel("depth (m)"), ax.set_ylabel("pixels"), ax.legend()
    return fig
