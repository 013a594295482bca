"""Quality per minute of CPU training: train.py with the demo's recipe (recipes/demo.txt, the file `make demo`
trains with) under a time budget, then evaluate.py, each as its own command."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import train

from .common import ROOT, Sizes, say, synthetic_dir

DEMO_RECIPE = "recipes/demo.txt"  # relative to ROOT; train.py reads it as @recipes/demo.txt


def recipe_flags(recipe: str = DEMO_RECIPE) -> list[str]:
    """The flags of a train.py @FILE recipe, one flag or value per line (argparse's fromfile format)."""
    return (ROOT / recipe).read_text().splitlines()


def quality_data(path: str | None, cache: Path, sizes: Sizes) -> str:
    """The set the quality runs use: `path` if given, else the demo's (train.py writes it on first use) or,
    when sizes.quality_frames is set, the cached set of that many frames. Returned absolute, except the demo's
    default, which train.py only recognises (and writes) as spelled, relative to ROOT."""
    if path is not None:
        return str(Path(path).resolve())
    if sizes.quality_frames is None:
        return train.DEFAULT_DATA
    return str(synthetic_dir(cache, sizes.quality_frames).resolve())


def run_script(*argv) -> float:
    """Run one of this project's scripts with this Python, from the project root; returns its wall time in s."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def epochs_logged(run_dir: Path) -> int:
    """Epochs train.py completed in run_dir (rows of its history.csv)."""
    with open(run_dir / "history.csv") as f:
        return len(list(csv.DictReader(f)))


def measure_quality(dataset_dir: str, work: Path, sizes: Sizes) -> dict:
    """delta1 and abs_rel on the test split after each training budget of the demo's recipe, beside
    evaluate.py's fair baseline (the model's recorded training mean depth everywhere)."""
    work = work.resolve()
    recipe = train.parse_args([f"@{ROOT / DEMO_RECIPE}"])
    rows = []
    for minutes in sizes.quality_minutes:
        run_dir, out = work / f"quality-{minutes:g}min", work / f"quality-{minutes:g}min-eval"
        for stale in (run_dir, out):  # train.py refuses to overwrite a run
            shutil.rmtree(stale, ignore_errors=True)
        say(f"quality: training the demo's {recipe.model} for {minutes:g} min")
        train_s = run_script("train.py", f"@{DEMO_RECIPE}", "--data", dataset_dir, "--time-budget", f"{minutes:g}",
                             "--input-size", *map(str, sizes.quality_input_hw), "--out", str(run_dir))
        limit = [] if sizes.quality_eval_frames is None else ["--limit", str(sizes.quality_eval_frames)]
        run_script("evaluate.py", "--model", str(run_dir / "model.keras"), "--data", dataset_dir, "--out", str(out),
                   "--baseline-frames", str(sizes.quality_baseline_frames), *limit)
        metrics = json.loads((out / "metrics.json").read_text())
        (model_metrics,) = (entry["metrics"] for entry in metrics["models"].values())
        rows.append({"minutes": minutes, "train_wall_s": train_s, "epochs": epochs_logged(run_dir),
                     "delta1": model_metrics["delta1"], "abs_rel": model_metrics["abs_rel"]})
        fair = next(c for c in metrics["constants"] if c["kind"] != "frames_mean")  # the fair baseline's row
        baseline = {"label": fair["label"], "delta1": fair["metrics"]["delta1"], "abs_rel": fair["metrics"]["abs_rel"]}
        say(f"quality: {minutes:g} min: delta1 {rows[-1]['delta1']:.3f}, abs_rel {rows[-1]['abs_rel']:.3f} "
            f"(baseline {baseline['delta1']:.3f}, {baseline['abs_rel']:.3f})")
    return {"data": dataset_dir, "test_images": metrics["images"],
            "recipe": f"train.py @{DEMO_RECIPE} ({' '.join(recipe_flags())}) --time-budget M; "
                      "evaluate.py defaults (flip, crop auto)",
            "steps_per_epoch": recipe.steps_per_epoch,
            "input_hw": list(sizes.quality_input_hw), "budgets": rows, "baseline": baseline}
