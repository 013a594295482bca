"""evaluate.py: the metrics against hand arithmetic and in the right argument order, the NYU protocol's pieces
(inclusive crops, valid pixels, median scaling) with known answers, and the command line end to end."""
import csv
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import evaluate
import layouts
import protocol
import nyu
import nyu_layouts as L
from depth import DepthScale
from layouts import DataError
from loss import ERROR_METRICS
from model import build_unet, record_train_mean_depth
from nyu import EIGEN_CROP
from conftest import real_rgbd

ROOT = Path(__file__).resolve().parents[1]


def test_compute_errors_by_hand():
    gt = np.array([1.0, 2.0, 4.0, 3.0])
    pred = np.array([1.0, 1.0, 6.0, 99.0])
    mask = np.array([True, True, True, False])  # the last pixel is not scored
    errors = protocol.compute_errors(gt, pred, mask)
    assert list(errors) == list(ERROR_METRICS) and all(isinstance(v, float) for v in errors.values())
    # max(gt/pred, pred/gt) = 1, 2, 1.5: only 1 is < 1.25; 1 and 1.5 are < 1.5625 and < 1.953125.
    assert errors["delta1"] == pytest.approx(1 / 3)
    assert errors["delta2"] == pytest.approx(2 / 3)
    assert errors["delta3"] == pytest.approx(2 / 3)
    assert errors["abs_rel"] == pytest.approx((0 / 1 + 1 / 2 + 2 / 4) / 3)  # |gt - pred| / gt
    assert errors["sq_rel"] == pytest.approx((0 / 1 + 1 / 2 + 4 / 4) / 3)  # (gt - pred)^2 / gt
    assert errors["rmse"] == pytest.approx(math.sqrt((0 + 1 + 4) / 3))
    assert errors["rmse_log"] == pytest.approx(math.sqrt((0 + math.log(2) ** 2 + math.log(1.5) ** 2) / 3))
    assert errors["log10"] == pytest.approx((0 + math.log10(2) + math.log10(1.5)) / 3)
    # Ground truth is the denominator: swapped, abs_rel = (0 + 1/1 + 2/6) / 3.
    swapped = protocol.compute_errors(pred, gt, mask)
    assert swapped["abs_rel"] == pytest.approx((1 + 2 / 6) / 3)
    assert swapped["abs_rel"] != pytest.approx(errors["abs_rel"])


def test_crops_are_inclusive():
    eigen = protocol.crop_mask((480, 640), EIGEN_CROP)
    assert eigen.sum() == 440 * 592  # rows 20..459, columns 24..615
    assert eigen[20, 24] and eigen[459, 615] and not eigen[19, 24] and not eigen[460, 615] and not eigen[459, 616]
    bts_box, _ = protocol.frame_crop("bts", (480, 640))
    assert protocol.crop_mask((480, 640), bts_box).sum() == 426 * 560  # rows 45..470, columns 41..600
    assert protocol.crop_mask((4, 5)).all()


def test_crop_choice():
    assert protocol.frame_crop("auto", (480, 640))[0] == EIGEN_CROP
    assert protocol.frame_crop("auto", (480, 640), data_crop=(1, 2, 3, 4))[0] == (1, 2, 3, 4)
    assert protocol.frame_crop("auto", (240, 320))[0] is None  # the NYU crops make no sense at other sizes
    assert protocol.frame_crop("none", (480, 640), data_crop=EIGEN_CROP)[0] is None
    assert protocol.frame_crop("eigen", (480, 640), data_crop=(1, 2, 3, 4))[0] == EIGEN_CROP
    with pytest.raises(DataError, match="480x640"):
        protocol.frame_crop("eigen", (240, 320))
    # --crop's help names each box as nyu.CROPS defines it.
    assert "rows 20-459, columns 24-615" in protocol.CROP_CHOICES["eigen"]
    assert "rows 45-470, columns 41-600" in protocol.CROP_CHOICES["bts"]


def test_perfect_prediction_scores_perfectly_over_valid_cropped_pixels_only():
    gt = np.random.default_rng(0).uniform(0.5, 8.0, (480, 640)).astype(np.float32)
    gt[100:110, 100:110] = 0.0  # holes
    gt[200:210, 300:310] = nyu.MAX_DEPTH_M + 2.0  # beyond the default depth range
    pred = gt.copy()
    pred[(gt == 0) | (gt > nyu.MAX_DEPTH_M)] = 5.0  # wrong only where nothing is scored
    pred[:20] = 9.0  # and above the crop
    valid = protocol.valid_mask(gt, DepthScale(), EIGEN_CROP)
    assert valid.sum() == 440 * 592 - 200
    errors = protocol.compute_errors(gt, pred, valid)
    assert errors["delta1"] == 1.0 and errors["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert errors["rmse"] == pytest.approx(0.0, abs=1e-6)


def test_median_scaling_undoes_a_global_scale():
    gt = np.random.default_rng(1).uniform(0.5, 8.0, (48, 64))
    valid = protocol.valid_mask(gt, DepthScale())
    scaled = protocol.median_scaled(gt, 2.0 * gt, valid)
    assert protocol.compute_errors(gt, scaled, valid)["abs_rel"] == pytest.approx(0.0, abs=1e-7)


def test_evenly_spaced_positions_include_both_ends_without_repeats():
    assert layouts.evenly_spaced(10, 3).tolist() == [0, 4, 9]  # 4.5 rounds to even
    assert layouts.evenly_spaced(40, 2).tolist() == [0, 39]
    assert layouts.evenly_spaced(2, 3).tolist() == [0, 1]  # no more than there are
    assert layouts.evenly_spaced(5, 1).tolist() == [0]


def save_unet(path, seed, train_mean_depth_m=None):
    """A 48x64 UNet predicting about 3 m in the default depth range (its output conv scaled up and shifted),
    recording train_mean_depth_m as train.py would (nothing for None, as models saved before it did), saved to path
    (a copy of unet_file's, the same model)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(unet_file(seed, train_mean_depth_m))
    return str(path)


@functools.cache
def unet_file(seed, train_mean_depth_m) -> bytes:
    """The .keras file of save_unet's model, built and saved once per process for each seed and mean."""
    keras.utils.set_random_seed(seed)
    model = build_unet((48, 64), base_filters=4, depth_scale=DepthScale("metres"))
    kernel, bias = model.get_layer("output_conv").get_weights()
    model.get_layer("output_conv").set_weights([kernel * 10.0, bias + 3.0])
    if train_mean_depth_m is not None:
        record_train_mean_depth(model, train_mean_depth_m)
    with tempfile.TemporaryDirectory() as folder:
        model.save(Path(folder) / "model.keras")
        return (Path(folder) / "model.keras").read_bytes()


def write_photos(folder):
    """Two small RGB photographs (landscape and portrait) and a corrupt PNG in folder; returns the folder."""
    rng = np.random.default_rng(5)
    folder.mkdir(parents=True)
    for name, hw in (("a_wide.png", (48, 64)), ("c_tall.png", (64, 48))):
        Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(folder / name)
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return str(folder)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_cli_end_to_end_on_nyu_test_zip(tmp_path):
    """The one run of `python evaluate.py` as a user types it; the other command-line tests call main in-process.
    The user has set TF_CPP_MIN_LOG_LEVEL=3, the usual way to silence TensorFlow, which brought back its start-up
    lines ("WARNING: All log messages before absl::InitializeLog()", oneDNN, "Could not find cuda drivers"): they
    print before TensorFlow reads the level (quiet.py keeps the user's level for what comes after). Their
    CUDA_VISIBLE_DEVICES is unset, as a user's is. (data.py inspect's subprocess test leaves the level unset.)"""
    test = L.make_frames(3, hw=(480, 640), seed=2)
    data = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(test))
    model = save_unet(tmp_path / "run" / "model.keras", seed=0)
    out, json_path = tmp_path / "eval", tmp_path / "metrics_copy.json"
    photos = write_photos(tmp_path / "photos")
    env = {k: v for k, v in os.environ.items() if k not in ("DEPTH_QUIET_LOGGING", "CUDA_VISIBLE_DEVICES")}
    run = subprocess.run([sys.executable, "evaluate.py", "--model", model, "--data", str(data), "--out", str(out),
                          "--json", str(json_path), "--median-scaling", "--photos", photos],
                         cwd=ROOT, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    printed, err = run.stdout, run.stderr
    start_up = ("absl::InitializeLog", "oneDNN", "cuda", "I0000", "W0000", "E0000")
    assert not [line for line in err.splitlines() if any(mark in line for mark in start_up)], err

    table = (out / "table.md").read_text()
    assert table in printed + "\n"
    for row in nyu.PUBLISHED:
        assert f"| {row['method']} | published, NYU Depth V2 test (654) |" in table
    # The model records no training mean and nyu_test.zip has no train split: no fair row, and one line says so.
    # The constant in hindsight is the test frames' mean over the scored pixels (valid, inside the data's crop).
    mean_m = np.mean(np.concatenate([depth[20:460, 24:616][depth[20:460, 24:616] > 0] for _, depth in test]))
    assert f"| constant: these frames' own mean depth ({mean_m:.2f} m), known only in hindsight |" in table
    assert "the fair baseline" not in table
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: no fair-baseline row for {model}: no training mean depth recorded in the model "
                     "(saved before train.py recorded it) and no train split in the data"]
    assert f"| {model} | {data} [test], 3 images |" in table
    assert f"| {model}, per-image median scaling |" in table
    assert "crop: the data's own (rows 20-459, columns 24-615)" in table and "mean over images" in table
    assert len(read_csv(out / "table.csv")) == len(nyu.PUBLISHED) + 2 + 1

    metrics = json.loads((out / "metrics.json").read_text())
    assert json.loads(json_path.read_text()) == metrics
    result = metrics["models"]["run_model"]
    assert set(result["metrics"]) == set(ERROR_METRICS) and set(result["median_scaled"]) == set(ERROR_METRICS)
    [hindsight] = metrics["constants"]
    assert hindsight["kind"] == "frames_mean" and hindsight["models"] == []
    assert hindsight["depth_m"] == pytest.approx(mean_m, rel=1e-5) and set(hindsight["metrics"]) == set(ERROR_METRICS)
    assert metrics["images"] == 3 and metrics["skipped"] == []
    # Every row of table.md, the median-scaled one included, is in metrics.json, in the table's order.
    markdown_rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines()[-(len(nyu.PUBLISHED) + 3):]]
    assert [row["method"] for row in metrics["table"]] == markdown_rows
    [scaled] = [row for row in metrics["table"] if row["method"] == f"{model}, per-image median scaling"]
    assert {k: scaled[k] for k in nyu.PUBLISHED_METRICS} == {k: result["median_scaled"][k] for k in nyu.PUBLISHED_METRICS}

    per_image = read_csv(out / "per_image_run_model.csv")
    assert [row["frame"] for row in per_image] == ["test_00000", "test_00001", "test_00002"]
    assert np.mean([float(row["abs_rel"]) for row in per_image]) == pytest.approx(result["metrics"]["abs_rel"])
    figure = Image.open(out / "examples_run_model.png")
    assert figure.width > 800 and figure.height > 600
    # One model: no comparison; photos.png has RGB | prediction for the two readable photographs.
    assert not (out / "comparison.png").exists()
    assert "b_broken.png: not a readable image" in err and f"{out / 'photos.png'}" in err
    photo_figure = Image.open(out / "photos.png")
    assert photo_figure.format == "PNG" and 600 < photo_figure.width < photo_figure.height


def test_cli_two_models_without_a_recorded_mean_get_the_train_split_mean_and_skipped_frames(tmp_path, capsys):
    train = L.make_frames(4, hw=(48, 64), seed=3)
    test = L.make_frames(3, hw=(480, 640), seed=4)
    files = L.densedepth_files(train, test)
    files["data/nyu2_test/00002_colors.png"] = files["data/nyu2_test/00002_colors.png"][:200]  # truncated
    data = L.write_zip(tmp_path / "nyu_data.zip", files)
    models = [save_unet(tmp_path / name / "model.keras", seed) for seed, name in enumerate(("a", "b"))]
    out = tmp_path / "eval"
    args = evaluate.parse_args(["--model", models[0], "--model", models[1], "--data", str(data), "--out", str(out),
                                "--crop", "bts", "--no-flip", "--baseline-frames", "2"])
    assert evaluate.main(args) == 0
    err = capsys.readouterr().err
    assert "skipped 1 frames" in err and "00002_colors.png" in err

    table = (out / "table.md").read_text()
    for model in models:
        assert f"| {model} | {data} [test], 2 images |" in table
    # Neither model recorded its training mean: the fair row averages 2 of the data's 4 training frames, evenly
    # spaced (the first and the last), as 8-bit PNGs, and says whose it is.
    sampled = [np.round(train[i][1] * 25.5) / 25.5 for i in (0, 3)]
    mean_m = np.mean(np.concatenate([depth[depth > 0] for depth in sampled]))
    assert (f"| constant: this data's train-split mean depth ({mean_m:.2f} m), the fair baseline if {models[0]} and "
            f"{models[1]} trained on it (no training mean recorded in the model) |") in table
    assert "known only in hindsight" in table and "note:" not in err
    assert "crop: bts: BTS / AdaBins' (rows 45-470, columns 41-600)" in table
    assert "flip test-time augmentation: off" in table
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics["models"]) == ["a_model", "b_model"]
    assert metrics["models"]["a_model"]["metrics"] != metrics["models"]["b_model"]["metrics"]
    for slug in ("a_model", "b_model"):
        assert len(read_csv(out / f"per_image_{slug}.csv")) == 2
        assert (out / f"examples_{slug}.png").is_file()
    assert (out / "comparison.png").is_file()  # --compare-frames 3 by default, of the 2 images evaluated


def known_depth_frames():
    """Two 48x64 frames of known depth in metres: 2 m with its top two rows missing (2944 valid pixels), and 4 m
    on the left half, 5 m on the right but 12 m (beyond the 10 m range, so not scored) in the last column."""
    near = np.full((48, 64), 2.0, np.float32)
    near[:2] = 0.0
    far = np.full((48, 64), 4.0, np.float32)
    far[:, 32:], far[:, 63] = 5.0, 12.0
    rgb = np.full((48, 64, 3), 128, np.uint8)
    return [(rgb, near), (rgb, far)]


def test_constants_are_the_recorded_training_mean_and_the_frames_own_mean(tmp_path, capsys):
    """A pairs folder without a train split, models a and b recording 2.4 m and 2.401 m (the same centimetre, as a
    UNet and a transfer model trained on the same frames record), c recording nothing: one fair row for a and b at
    a's exactly 2.4 m, scored as compute_errors scores that constant; the hindsight row at the frames' own
    mean over the scored pixels; c gets no fair row, said in one line."""
    frames = known_depth_frames()
    L.write_pairs(tmp_path / "known" / "test", frames, "npy")
    models = [save_unet(tmp_path / name / "model.keras", seed, mean)
              for seed, (name, mean) in enumerate([("a", 2.4), ("b", 2.401), ("c", None)])]
    args = evaluate.parse_args(sum([["--model", m] for m in models], []) + [
        "--data", str(tmp_path / "known"), "--no-flip", "--out", str(tmp_path / "eval")])
    assert evaluate.main(args) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("note:")] == [
        f"note: no fair-baseline row for {models[2]}: no training mean depth recorded in the model (saved before "
        "train.py recorded it) and no train split in the data"]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    fair, hindsight = metrics["constants"]
    assert (fair["kind"], fair["depth_m"], fair["models"]) == ("training_mean", 2.4, models[:2])
    scored = [(depth > 0) & (depth <= 10.0) for _, depth in frames]  # no crop on 48x64 frames
    by_hand = [protocol.compute_errors(depth, np.full_like(depth, 2.4), valid) for (_, depth), valid in zip(frames, scored)]
    assert fair["metrics"] == pytest.approx({k: np.mean([e[k] for e in by_hand]) for k in ERROR_METRICS})
    # 2 / 2.4 is within 1.25, 4 and 5 are not; |gt - 2.4| / gt: 0.2 on the first frame, 1.6 / 4 and 2.6 / 5 on the second.
    assert fair["metrics"]["delta1"] == 0.5
    assert fair["metrics"]["abs_rel"] == pytest.approx((0.2 + (1536 * 0.4 + 1488 * 0.52) / 3024) / 2)
    # The frames' own mean: 2944 pixels of 2 m, 1536 of 4 m, 1488 of 5 m (the 12 m column is not scored).
    assert hindsight["kind"] == "frames_mean" and hindsight["models"] == []
    assert hindsight["depth_m"] == pytest.approx((2944 * 2 + 1536 * 4 + 1488 * 5) / (2944 + 1536 + 1488), rel=1e-12)
    table = (tmp_path / "eval" / "table.md").read_text()
    assert (f"| constant: training-set mean depth of {models[0]} and {models[1]} (2.40 m), the fair baseline | "
            f"{tmp_path / 'known'} [test], 2 images | 0.500 |") in table
    assert "| constant: these frames' own mean depth (3.26 m), known only in hindsight |" in table
    assert [row["method"] for row in read_csv(tmp_path / "eval" / "table.csv")][-2:] == [fair["label"], hindsight["label"]]


def test_bad_data_path_is_one_sentence_and_exit_2(tmp_path, capsys):
    model = save_unet(tmp_path / "model.keras", seed=0)
    args = evaluate.parse_args(["--model", model, "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'missing'} does not exist")


def test_non_finite_predictions_are_refused_with_one_sentence(tmp_path, capsys):
    data = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(L.make_frames(2, seed=3)))
    model = build_unet((48, 64), base_filters=4, depth_scale=DepthScale("metres"))
    kernel, bias = model.get_layer("output_conv").get_weights()
    model.get_layer("output_conv").set_weights([kernel, np.full_like(bias, np.nan)])  # a diverged model
    model.save(tmp_path / "nan.keras")
    args = evaluate.parse_args(["--model", str(tmp_path / "nan.keras"), "--data", str(data), "--out", str(tmp_path / "o")])
    assert evaluate.main(args) == 2
    err = capsys.readouterr().err
    assert f"error: model {tmp_path / 'nan.keras'} predicted non-finite depth for 2 of 2 images" in err
    assert not (tmp_path / "o" / "table.md").exists()


def test_cli_two_models_comparison_and_photos(tmp_path, capsys):
    test = L.make_frames(3, hw=(48, 64), seed=6)  # small frames: this test is about the figures
    data = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(test, crop=(2, 45, 2, 61)))
    models = [save_unet(tmp_path / name / "model.keras", seed) for seed, name in enumerate(("a", "b"))]
    common = ["--model", models[0], "--model", models[1], "--data", str(data), "--no-flip"]
    photos = write_photos(tmp_path / "photos")
    assert evaluate.main(evaluate.parse_args(common + ["--out", str(tmp_path / "three"), "--photos", photos])) == 0
    err = capsys.readouterr().err
    assert "b_broken.png: not a readable image" in err
    assert f"{tmp_path / 'three' / 'comparison.png'}" in err and f"{tmp_path / 'three' / 'photos.png'}" in err
    three = Image.open(tmp_path / "three" / "comparison.png")
    assert three.format == "PNG" and three.width > three.height > 600  # RGB | ground truth | a | b, 3 rows
    photo_figure = Image.open(tmp_path / "three" / "photos.png")
    assert photo_figure.format == "PNG" and photo_figure.width > 900 and photo_figure.height > 500  # RGB | a | b

    assert evaluate.main(evaluate.parse_args(common + ["--out", str(tmp_path / "two"), "--compare-frames", "2"])) == 0
    two = Image.open(tmp_path / "two" / "comparison.png")
    assert two.width == three.width and 300 < two.height < three.height
    assert not (tmp_path / "two" / "photos.png").exists()

    # Photographs that cannot be found fail before anything is evaluated; counts below 1 are refused.
    missing, one_model = str(tmp_path / "no_such_photos"), ["--model", models[0], "--data", str(data)]
    assert evaluate.main(evaluate.parse_args(one_model + ["--out", str(tmp_path / "x"), "--photos", missing])) == 2
    err = capsys.readouterr().err
    assert f"{missing}: matched no file" in err and "error: --photos" in err
    assert not (tmp_path / "x" / "table.md").exists()
    for flag in ("--compare-frames", "--max-photos"):
        with pytest.raises(SystemExit):
            evaluate.parse_args(common + [flag, "0"])


def evaluate_files(tmp_path, capsys, *flags):
    """(exit code, stderr, the names written to --out) of evaluate.main with a tiny model and `flags`."""
    model = save_unet(tmp_path / "model.keras", seed=0)
    out = tmp_path / "eval"
    code = evaluate.main(evaluate.parse_args(["--model", model, "--out", str(out), *flags]))
    return code, capsys.readouterr().err, sorted(p.name for p in out.iterdir()) if out.exists() else []


def test_a_split_with_nothing_to_score_is_one_sentence_naming_it_and_writes_nothing(tmp_path, capsys):
    """Every depth file 8-bit in a pairs folder (unreadable as 16-bit mm), then a test split whose depth is all 0
    beside a train split that is fine: one sentence each, naming the split, the count and the first reason."""
    frames = L.make_frames(2, seed=8)
    files = {}
    for i, (rgb, depth) in enumerate(frames):
        files[f"test/c{i}_rgb.png"], files[f"test/c{i}_depth.png"] = L.png_bytes(rgb), L.depth_png8(depth)
    L.write_folder(tmp_path / "eight", files)
    code, err, written = evaluate_files(tmp_path, capsys, "--data", str(tmp_path / "eight"))
    assert code == 2 and written == [] and "Traceback" not in err
    folder = tmp_path / "eight" / "test"
    assert err.strip().splitlines()[-1] == (
        f"error: no frame of {folder} [test] is readable (2 tried); the first: {folder}: c0_rgb.png + c0_depth.png: "
        "depth: a 8-bit PNG; expected a 16-bit PNG in millimetres")

    zero = [(rgb, np.zeros_like(depth)) for rgb, depth in frames]
    L.write_pairs(tmp_path / "zero" / "train", frames, "png")
    L.write_pairs(tmp_path / "zero" / "test", zero, "png")
    code, err, written = evaluate_files(tmp_path, capsys, "--data", str(tmp_path / "zero"))
    assert code == 2 and written == []
    assert err.strip().splitlines()[-1] == (
        f"error: no frame of {tmp_path / 'zero' / 'test'} [test] could be scored (2 tried); the first: "
        f"{tmp_path / 'zero' / 'test'}: cap000_rgb.png + cap000_depth.png: no ground truth in 0.1-10 m inside the crop")


def test_exif_portrait_is_scored_upright_and_a_size_mismatch_is_skipped_by_name(tmp_path, capsys):
    folder, _ = L.odd_pairs(tmp_path / "odd")
    code, err, written = evaluate_files(tmp_path, capsys, "--data", str(folder), "--split", "all")
    assert code == 0, err
    assert "skipped 1 frames" in err and "wrong_rgb.png + wrong_depth.png: RGB is 640x480 but depth is 200x200" in err
    [per_image] = (tmp_path / "eval").glob("per_image_*.csv")
    assert [row["frame"] for row in read_csv(per_image)] == ["portrait_rgb.jpg"]


def test_the_real_mixed_size_pairs_folder_is_evaluated(tmp_path, capsys):
    """../shared/real_rgbd/pairs: nine real frames from five sensors at five sizes, every one scored; the constant in
    hindsight is the mean of their scored depth (0.1-10 m, inside the Eigen crop on 480x640 frames), computed here
    from the PNGs (16-bit mm) independently of the readers."""
    pairs = real_rgbd("pairs")
    depths = [np.asarray(Image.open(p), np.float64) / 1000 for p in sorted((pairs / "test").glob("*_depth.png"))]
    scored = [d[20:460, 24:616] if d.shape == (480, 640) else d for d in depths]
    mean_m = np.concatenate([d[(d >= 0.1) & (d <= 10.0)] for d in scored]).mean()
    code, err, _ = evaluate_files(tmp_path, capsys, "--data", str(pairs), "--no-flip")
    assert code == 0, err
    assert "skipped" not in err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 9 and [c["kind"] for c in metrics["constants"]] == ["frames_mean"]
    assert metrics["constants"][0]["depth_m"] == pytest.approx(mean_m, rel=1e-5)


def test_dollar_signs_in_model_data_and_photo_paths_are_drawn_as_plain_text(tmp_path, capsys):
    """'$' in every user string a figure draws (model paths as headings, the dataset path in titles, photo names as
    row labels): Matplotlib read "runs$$/..." as mathtext and failed after scoring. All figures are written."""
    test = L.make_frames(2, hw=(48, 64), seed=6)
    (tmp_path / "my $$ data").mkdir()
    data = L.write_zip(tmp_path / "my $$ data" / "nyu_test.zip", L.eigen_files(test, crop=(2, 45, 2, 61)))
    models = [save_unet(tmp_path / f"runs$${name}" / "model.keras", seed) for seed, name in enumerate(("a", "b$"))]
    photos = tmp_path / "my $$ photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photos / "my $$ photo.png")
    out = tmp_path / "eval $x$"
    args = evaluate.parse_args(["--model", models[0], "--model", models[1], "--data", str(data), "--no-flip",
                                "--photos", str(photos), "--compare-frames", "2", "--out", str(out)])
    assert evaluate.main(args) == 0, capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["comparison.png", "examples_runs_a_model.png",
                                                         "examples_runs_b_model.png", "photos.png"]
    assert f"| {models[0]} | {data} [test], 2 images |" in (out / "table.md").read_text()


def test_the_table_is_written_before_the_figures(tmp_path, capsys, monkeypatch):
    """A figure that fails to draw (a bug, a full disk) leaves the table, CSVs and metrics.json of the scoring."""
    data = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(L.make_frames(2, hw=(48, 64), seed=6)))
    model = save_unet(tmp_path / "run" / "model.keras", seed=0)

    def broken_figure(*args, **kwargs):
        raise RuntimeError("the figure failed")

    monkeypatch.setattr(evaluate, "example_figure", broken_figure)
    out = tmp_path / "eval"
    with pytest.raises(RuntimeError, match="the figure failed"):
        evaluate.main(evaluate.parse_args(["--model", model, "--data", str(data), "--no-flip", "--out", str(out)]))
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "per_image_run_model.csv", "table.csv", "table.md"]
    assert f"| {model} | {data} [test], 2 images |" in capsys.readouterr().out


def test_progress_in_a_log_file_is_whole_lines(tmp_path, capsys):
    """Progress written to a file (a cluster job's log, make demo > log 2>&1) was tqdm's one line redrawn with
    carriage returns; it is a line per update (at most every quiet.LOG_EVERY_S) and a last line with the count."""
    data = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(L.make_frames(3, hw=(48, 64), seed=6)))
    model = save_unet(tmp_path / "run" / "model.keras", seed=0)
    assert evaluate.main(evaluate.parse_args(["--model", model, "--data", str(data), "--no-flip",
                                              "--out", str(tmp_path / "eval")])) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    progress = [line for line in err.splitlines() if line.startswith(("test mean depth:", "evaluate:"))]
    assert [line.split("|")[-1].split()[0] for line in progress] == ["0/3", "3/3", "0/3", "3/3"]
