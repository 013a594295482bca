"""benchmark.py --quick through its command line: the JSON it writes has every figure, finite and positive.

Only the shape is checked, never a timing: the numbers depend on the machine and its load.
"""
import json
import math
import subprocess
import sys

import pytest

from conftest import ROOT

HEADLINE = ("pipeline_speedup", "pipeline_stall", "pipeline_memory_growth", "train_speedup_unet",
            "train_speedup_transfer", "infer_speedup_unet", "infer_speedup_transfer", "peak_fraction_train",
            "peak_fraction_infer")
SECTIONS = ("machine", "settings", "pipeline", "memory", "training", "stall", "inference", "limit", "quality", "goals")


def figures(tree):
    """Every {median, min, max, runs} figure anywhere in the results."""
    if isinstance(tree, dict):
        if "median" in tree:
            yield tree
        else:
            for value in tree.values():
                yield from figures(value)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "x.json"
    work = tmp_path_factory.mktemp("work")
    run = subprocess.run([sys.executable, "benchmark.py", "--quick", "--json", str(out), "--work", str(work)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| measure |" in run.stdout  # the Markdown summary table
    return json.loads(out.read_text())


def test_headline_numbers_are_finite_and_positive(results):
    for key in HEADLINE:
        value = results[key]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, value)


def test_every_section_is_present(results):
    assert set(SECTIONS) <= set(results)
    assert results["settings"]["mode"] == "quick"
    assert set(results["goals"]) == {"pipeline_speedup", "pipeline_stall", "pipeline_memory_growth"}
    assert all(isinstance(goal["met"], bool) for goal in results["goals"].values())
    for kind in ("unet", "transfer"):
        assert {"images_per_s", "speedup", "fastest", "correct"} <= set(results["training"][kind])
        assert {"ms_per_image", "speedup", "fastest", "max_abs_diff_m"} <= set(results["inference"][kind])
        assert results["limit"]["flops"][kind]["flops_per_image"] > 0
    assert {"cpu", "cores", "tensorflow"} <= set(results["machine"])


def test_every_figure_has_median_min_max_of_its_runs(results):
    found = list(figures({k: v for k, v in results.items() if k not in HEADLINE}))
    assert len(found) > 20
    for figure in found:
        runs = figure["runs"]
        assert runs and all(math.isfinite(v) for v in runs), figure
        assert figure["min"] <= figure["median"] <= figure["max"], figure
        assert figure["min"] == min(runs) and figure["max"] == max(runs), figure


def test_quality_rows_hold_metrics_for_each_budget(results):
    quality = results["quality"]
    assert [row["minutes"] for row in quality["budgets"]] == [0.1]
    for row in quality["budgets"] + [quality["baseline"]]:
        assert 0 <= row["delta1"] <= 1 and row["abs_rel"] > 0
