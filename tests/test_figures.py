"""figures.py: colorize's ends and clipping, figure pixel sizes from their layout, and no TensorFlow on import."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import figures
from conftest import ROOT

PLASMA_FIRST = (0.050383, 0.029803, 0.527975)  # matplotlib's plasma at 0: dark purple
PLASMA_LAST = (0.940015, 0.975158, 0.131326)  # and at 1: bright yellow


def test_colorize_maps_near_to_bright_far_to_dark_clips_beyond_and_greys_holes():
    lo, hi = 0.5, 4.0
    rgb = figures.colorize(np.array([[lo, hi, hi + 5.0, lo - 1.0, 0.0]]), lo, hi)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.float32
    assert figures.DEPTH_CMAP == "plasma_r"
    for near in (rgb[0, 0], rgb[0, 3], rgb[0, 4]):  # lo, and everything nearer than lo
        np.testing.assert_allclose(near, PLASMA_LAST, atol=1e-6)
    for far in (rgb[0, 1], rgb[0, 2]):  # hi, and everything farther
        np.testing.assert_allclose(far, PLASMA_FIRST, atol=1e-6)
    np.testing.assert_allclose(figures.colorize(np.array([np.nan]), lo, hi)[0], [0.85] * 3)  # no depth: grey


def rows(count, hw=(48, 64)):
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 5.0, hw)
    gt[:4] = 0.0  # no ground truth in the top rows
    return [figures.ExampleRow(f"frame {i}", rng.integers(0, 256, (*hw, 3), dtype=np.uint8), gt, gt + 0.5, gt > 0)
            for i in range(count)]


@pytest.mark.parametrize("name, draw, size", [
    # 4 panels 3.75 in wide; 2 rows of 3.2 * 48/64 + 0.15 + 0.15 in, + 0.6 in of title; 100 dpi.
    ("examples", lambda: figures.examples_figure(rows(2), "two rows"), (1500, 600)),
    # RGB | ground truth and no model (the notebook's dataset view): 2 panels; 1 row with 2 title lines.
    ("dataset", lambda: figures.comparison_figure(
        [figures.ComparisonRow(r.title, r.rgb, r.gt_m, [], []) for r in rows(1)], [], "frames"), (750, 345)),
    # The longest side 6 in, plus 1.4 in for the colour bar and 0.6 in for the title.
    ("preview", lambda: figures.depth_color_figure(rows(1)[0].pred_m, "a title"), (740, 510)),
])
def test_figures_are_png_of_the_size_their_layout_gives(tmp_path, name, draw, size):
    draw().savefig(tmp_path / f"{name}.png")
    with Image.open(tmp_path / f"{name}.png") as image:
        assert image.format == "PNG" and image.size == size


def test_imports_stay_light():
    """figures.py starts no TensorFlow; no script but train.py (every other one, the web page's too), nor the
    modules they read data and models with, imports train.py, the renderer or the benchmark (each a package
    outside the core): loading, evaluating, predicting with or exporting a model renders nothing."""
    check = ("import sys, figures; assert 'tensorflow' not in sys.modules\n"
             "import app, data, evaluate, export, kerashub, layouts, model, predict, video, webpage\n"
             "outside = [m for m in sys.modules if m.split('.')[0] in ('synth', 'benchmarks', 'train')]\n"
             "assert not outside, outside")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_long_model_paths_are_headings_broken_after_a_slash():
    """Column headings of at most figures.HEADING_CHARS characters per line, broken only after '/', nothing lost."""
    label = "runs/compare/squeezenet-imagenet/model.keras"
    assert figures.wrapped(label) == "runs/compare/\nsqueezenet-imagenet/\nmodel.keras"
    assert figures.wrapped("runs/demo/model.keras") == "runs/demo/model.keras"  # short enough: one line
    assert figures.wrapped("a_file_name_longer_than_thirty_characters.keras") == \
        "a_file_name_longer_than_thirty_characters.keras"  # no '/': its own line, whole


def test_depth_colours_span_the_scored_pixels_only():
    """A real frame's stray sensor readings (13 m, outside the 0.1-10 m range, so never scored) ran the colour bar
    to 13 m; it spans the scored ground truth and predictions: here 1.5-5.5 m, though the frame holds 13 m and an
    unscored prediction of 0.2 m."""
    gt = np.full((8, 10), 3.0)
    gt[0, 0], gt[7, 9], gt[4, 4] = 1.5, 5.0, 13.0
    pred = gt + 0.5
    pred[2, 2] = 0.2
    scored = (gt <= 10.0)
    scored[2, 2] = False
    rgb = np.zeros((8, 10, 3), np.uint8)
    fig = figures.examples_figure([figures.ExampleRow("frame", rgb, gt, pred, scored)], "one row")
    assert [image.get_clim() for image in fig.axes[1].images + fig.axes[2].images] == [(1.5, 5.5)] * 2
    fig = figures.comparison_figure([figures.ComparisonRow("frame", rgb, gt, [pred], ["abs_rel"], scored)], ["m"], "t")
    assert [image.get_clim() for image in fig.axes[1].images + fig.axes[2].images] == [(1.5, 5.5)] * 2
    fig = figures.comparison_figure([figures.ComparisonRow("frame", rgb, gt, [], [])], [], "a dataset's frames")
    assert fig.axes[1].images[0].get_clim() == (1.5, 13.0)  # no scored pixels given: every depth there is
