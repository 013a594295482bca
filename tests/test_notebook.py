"""notebooks/explore_depth.ipynb runs top to bottom (training its own tiny model), so it never rots."""
import os
import subprocess

import nbformat
import numpy as np
from nbclient import NotebookClient
from PIL import Image

import synth
from conftest import ROOT


def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    dataset = synth.write_synthetic(tmp_path / "synth", train=6, test=3, workers=1)
    monkeypatch.setenv("DEPTH_DATA", str(dataset))
    monkeypatch.setenv("DEPTH_MODEL", str(tmp_path / "run" / "model.keras"))  # missing: the notebook trains it
    monkeypatch.setenv("DEPTH_TRAIN_MINUTES", "0.02")
    photos = tmp_path / "photos"  # two photographs of its own: the figure without ../shared's six
    photos.mkdir()
    for i, hw in enumerate([(48, 64), (64, 48)]):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (*hw, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    monkeypatch.setenv("DEPTH_EXAMPLES", str(photos))
    notebook = nbformat.read(ROOT / "notebooks" / "explore_depth.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4, "dataset, predictions, histogram and photographs figures"
    text = "".join(o.get("text", "") for o in outputs) + "".join(str(o.get("data", {})) for o in outputs)
    # evaluate.py's table: its metric columns and its two constants (the model recorded its training mean).
    assert "delta1" in text and "constant: training-set mean depth of" in text and "known only in hindsight" in text
    assert (tmp_path / "run" / "model.keras").is_file()


def test_make_notebook_adds_allow_root_only_when_run_as_root():
    """JupyterLab refuses to start as root ("Running as root is not recommended. Use --allow-root"), which is how
    Colab and most containers run make notebook."""
    run = subprocess.run(["make", "-n", "notebook"], cwd=ROOT, capture_output=True, text=True)
    [lab] = [line for line in run.stdout.splitlines() if "jupyter lab" in line]
    assert ("--allow-root" in lab.split()) == (os.geteuid() == 0)
