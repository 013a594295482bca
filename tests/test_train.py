"""train.py through its command line: a tiny UNet learns, saves, reloads; a killed run resumes; tf.distribute."""
import csv
import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import loss  # noqa: F401  registers DepthLoss and DepthMetric for compiled checkpoints
import model as models
import nyu_layouts as L
from conftest import ROOT

TINY = ["--model", "unet", "--base-filters", "4", "--input-size", "32", "48", "--bs", "2", "--tb-images", "2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """DenseDepth's nyu_data.zip layout with 8 train and 4 test frames of 48x64."""
    files = L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2))
    return str(L.write_zip(tmp_path_factory.mktemp("data") / "nyu_data.zip", files))


def train(*flags, check=True):
    run = subprocess.run([sys.executable, "train.py", *flags], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr[-3000:]
    return run


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_unet_learns_saves_and_reloads(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    train(*TINY, "--data", tiny_data, "--out", str(run_dir), "--epochs", "4", "--steps-per-epoch", "8", "--lr", "3e-3")
    rows = history(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0], losses
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("val_loss", "val_delta1", "val_abs_rel", "ssim"))
    saved = json.loads((run_dir / "args.json").read_text())
    assert saved["base_filters"] == 4 and saved["data"] == tiny_data
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.partial.keras")), "no temporary checkpoint may be left behind"
    assert list((run_dir / "logs" / "depth_maps").glob("events.out.tfevents.*"))

    final = keras.models.load_model(run_dir / "model.keras")  # no custom_objects: model.py registered its layer
    assert not final.compiled  # the inference artefact; checkpoints keep the compile state
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")  # DepthLoss, DepthMetric: loss.py
    assert last.compiled and last.loss.theta == 0.1
    x = np.random.default_rng(0).random((2, 32, 48, 3), dtype=np.float32)
    np.testing.assert_array_equal(final.predict(x, verbose=0), last.predict(x, verbose=0))
    assert models.depth_scale_of(final).to_config() == {"mode": "inverse", "min_depth_m": 0.1, "max_depth_m": 10.0}


def test_killed_run_resumes_to_the_same_epoch_count(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    flags = [*TINY, "--data", tiny_data, "--out", str(run_dir), "--epochs", "3", "--steps-per-epoch", "150"]
    proc = subprocess.Popen([sys.executable, "train.py", *flags], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "history.csv").exists() and len(history(run_dir)) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)  # mid-epoch 2: no chance to clean up
    proc.wait()
    done_before = len(history(run_dir))
    assert 1 <= done_before < 3

    resumed = train("--out", str(run_dir), "--resume")
    assert "resuming" in resumed.stderr
    assert [int(r["epoch"]) for r in history(run_dir)] == [0, 1, 2]
    keras.models.load_model(run_dir / "model.keras").predict(np.zeros((1, 32, 48, 3), np.float32), verbose=0)
    assert train("--out", str(run_dir), check=False).returncode == 2  # a finished run is not overwritten


def test_mirrored_strategy_on_two_logical_cpus_with_mixed_precision(tiny_data, tmp_path):
    run = train(*TINY, "--data", tiny_data, "--out", str(tmp_path / "run"), "--epochs", "1", "--steps-per-epoch", "3",
                "--strategy", "mirrored", "--logical-devices", "2", "--mixed-precision", "--bs", "4")
    assert "2 replica(s)" in run.stderr and "mixed_bfloat16" in run.stderr
    net = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert net.outputs[0].dtype == "float32"
    assert np.isfinite(net.predict(np.zeros((1, 32, 48, 3), np.float32), verbose=0)).all()


@pytest.mark.parametrize("flags, message", [
    (["--data", "/no/such/dataset"], "error: /no/such/dataset does not exist"),
    (["--val-split", "validation"], "has no 'validation' split"),
])
def test_bad_input_is_one_sentence(tiny_data, tmp_path, flags, message):
    flags = ["--data", tiny_data, *TINY, "--out", str(tmp_path / "run"), *flags]
    run = train(*flags, check=False)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr


def test_bad_flag_is_an_argparse_error():
    run = train("--epochs", "0", check=False)
    assert run.returncode == 2 and "--epochs must be at least 1" in run.stderr


def test_time_budget_ends_the_run_early_but_whole(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    run = train(*TINY, "--data", tiny_data, "--out", str(run_dir), "--epochs", "5", "--steps-per-epoch", "500",
                "--time-budget", "0.001")
    assert "time budget of 0.001 min reached" in run.stderr and run.stderr.count("time budget") == 1
    rows = history(run_dir)
    assert len(rows) == 1 and rows[0]["val_loss"]  # the cut-short epoch is still validated and logged
    assert (run_dir / "model.keras").is_file() and (run_dir / "checkpoints" / "best.keras").is_file()



def test_frozen_encoder_keeps_its_initial_weights(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    flags = ["--model", "transfer", "--encoder", "mobilenetv2", "--encoder-weights", "none", "--input-size", "32", "48",
             "--bs", "2", "--tb-images", "0", "--data", tiny_data, "--out", str(run_dir), "--steps-per-epoch", "3"]
    run = train(*flags, "--epochs", "1", "--freeze-encoder-epochs", "1", "--lr", "1e-2")
    assert "epochs 1-1: encoder frozen" in run.stderr
    trained = keras.models.load_model(run_dir / "model.keras")
    keras.utils.set_random_seed(0)  # train.py's default seed, so this builds the very same initial weights
    initial = models.build_model("transfer", encoder="mobilenetv2", encoder_weights="none", input_hw=(32, 48))
    encoder = models.encoder_layer_names(initial)
    for name in encoder:
        for before, after in zip(initial.get_layer(name).get_weights(), trained.get_layer(name).get_weights()):
            np.testing.assert_array_equal(before, after, err_msg=name)
    assert not np.array_equal(initial.get_layer("conv2").get_weights()[0], trained.get_layer("conv2").get_weights()[0])

    flags[flags.index("--out") + 1] = str(tmp_path / "two")
    two_phases = train(*flags, "--epochs", "2", "--freeze-encoder-epochs", "1")
    assert "epochs 2-2: encoder trainable" in two_phases.stderr
    assert [int(r["epoch"]) for r in history(tmp_path / "two")] == [0, 1]
