"""export.py and backends.py: a tiny model exported to each format predicts the Keras model's depth in metres through
predict.py and evaluate.py, int8 runs and is scored, and bad or unrunnable files are one sentence with exit 2."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import backends
import evaluate
import export
import nyu_layouts as L
import predict
from conftest import built_once
from depth import DepthScale
from model import build_model, build_unet, record_train_mean_depth

ROOT = Path(__file__).resolve().parents[1]
INPUT_HW = (48, 64)
TRAIN_MEAN_DEPTH_M = 3.25  # what the run's model records as its training frames' mean depth, as train.py would
FLOAT_TOLERANCE_M = 1e-3  # the bound for float32 exports against the Keras model
# (format, quantize) -> the file export.py writes beside model.keras by default
EXPORTS = {("savedmodel", "none"): "model_savedmodel", ("tflite", "none"): "model.tflite",
           ("tflite", "float16"): "model_float16.tflite", ("tflite", "int8"): "model_int8.tflite",
           ("onnx", "none"): "model.onnx"}


def tiny_inverse_unet(seed=0):
    """A 48x64 UNet in DenseDepth's inverse depth whose output (about 3, so about 3.3 m) varies inside the range,
    so the decoding to metres inside the exported graph is exercised away from the clip limits."""
    keras.utils.set_random_seed(seed)
    net = build_unet(INPUT_HW, base_filters=4, depth_scale=DepthScale("inverse"))
    kernel, bias = net.get_layer("output_conv").get_weights()
    net.get_layer("output_conv").set_weights([kernel * 10.0, bias + 3.0])
    return net


def random_rgb(count, hw, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *hw, 3), dtype=np.uint8)


UNREADABLE_TRAINING_RGB = "data/nyu2_train/room_0_out/0.jpg"  # of the run's data: bytes no decoder reads
INT8_PRINTED = "int8_printed.txt"  # beside the run: what export.main printed for the int8 export


def write_run(root: Path) -> None:
    """root/run, a train.py-like run directory: model.keras, an args.json naming root/nyu_data.zip (6 train frames,
    the first one's RGB unreadable (UNREADABLE_TRAINING_RGB), and 3 test frames) and every export of EXPORTS, written
    by export.main at its defaults beside model.keras (the SavedModel into an empty folder made ahead, which it
    replaces; int8 calibrated on the 5 readable training images, what it printed saved in root/INT8_PRINTED)."""
    root.mkdir()
    files = L.densedepth_files(L.make_frames(6, hw=INPUT_HW, seed=1), L.make_frames(3, hw=INPUT_HW, seed=2))
    files[UNREADABLE_TRAINING_RGB] = b"not a JPEG"
    data = L.write_zip(root / "nyu_data.zip", files)
    run = root / "run"
    run.mkdir()
    net = tiny_inverse_unet()
    record_train_mean_depth(net, TRAIN_MEAN_DEPTH_M)
    net.save(run / "model.keras")
    (run / "args.json").write_text(json.dumps({"data": str(data), "train_split": "auto", "model": "unet"}))
    (run / EXPORTS["savedmodel", "none"]).mkdir()
    for (fmt, quantize), name in EXPORTS.items():
        args = export.parse_args(["--model", str(run / "model.keras"), "--format", fmt, "--quantize", quantize,
                                  "--calibration-frames", "6"])
        assert args.out == run / name
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert export.main(args) == 0, (fmt, quantize)
        if quantize == "int8":
            (root / INT8_PRINTED).write_text(printed.getvalue())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The run directory of write_run, built once per session (test_export_safety shares it): tests read it and
    write elsewhere."""
    return built_once(tmp_path_factory, "export_run", write_run) / "run"


@pytest.fixture(scope="module")
def exported(run_dir):
    """{(format, quantize): path} of every export of the run's model, written by export.main at its defaults."""
    return {key: run_dir / name for key, name in EXPORTS.items()}


@pytest.fixture(scope="module")
def net(run_dir):
    return keras.models.load_model(run_dir / "model.keras")


def test_every_export_records_its_sizes_range_units_and_training_mean(exported, run_dir, tmp_path):
    model, _ = backends.load_depth_model(run_dir / "model.keras")
    assert backends.recorded_mean_depth_m(model) == TRAIN_MEAN_DEPTH_M  # through the .keras file's save and load
    for (fmt, quantize), path in exported.items():
        info = json.loads(backends.sidecar_path(path).read_text())
        assert info["format"] == fmt and info["quantize"] == quantize and info["flip"] is True
        assert info["input_hw"] == [48, 64] and info["output_hw"] == [48, 64]  # the UNet predicts at full size
        assert (info["min_depth_m"], info["max_depth_m"], info["units"]) == (0.1, 10.0, "metres")
        assert info["train_mean_depth_m"] == TRAIN_MEAN_DEPTH_M
        model, depth_scale = backends.load_depth_model(path)
        assert model.input_shape == (None, 48, 64, 3) and depth_scale == DepthScale("metres", 0.1, 10.0)
        assert backends.recorded_mean_depth_m(model) == TRAIN_MEAN_DEPTH_M
    # A sidecar written before export.py carried the training mean still loads, recording none.
    old = tmp_path / "old.onnx"
    old.write_bytes(exported["onnx", "none"].read_bytes())
    info = json.loads(backends.sidecar_path(exported["onnx", "none"]).read_text())
    del info["train_mean_depth_m"]
    backends.sidecar_path(old).write_text(json.dumps(info))
    model, _ = backends.load_depth_model(old)
    assert backends.recorded_mean_depth_m(model) is None


def test_float_exports_predict_the_keras_models_metres_through_predict_py(exported, net, tmp_path):
    """Each float export, run by its own runtime through predict.py's command line, writes the depth the Keras model
    predicts (flip average inside the exported graph against predict.py's, outside), at the photo's size."""
    photo = random_rgb(1, (60, 80), seed=3)[0]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    keras_depth = predict.predict_depth_m(net, photo)
    assert keras_depth.std() > 0.05 and 0.5 < keras_depth.mean() < 9.0  # varies, away from the clip limits
    for key in [("savedmodel", "none"), ("tflite", "none"), ("onnx", "none")]:
        out = tmp_path / key[0]
        assert predict.main(predict.parse_args(["--model", str(exported[key]), str(tmp_path / "photo.png"),
                                                "--out", str(out)])) == 0
        depth = np.load(out / "photo_depth.npy")
        assert depth.shape == (60, 80)
        np.testing.assert_allclose(depth, keras_depth, atol=FLOAT_TOLERANCE_M, err_msg=str(key))
    # float16 weights: within a centimetre here, but not the float32 bound's millimetre promise.
    model, _ = backends.load_depth_model(exported["tflite", "float16"])
    np.testing.assert_allclose(predict.predict_depth_m(model, photo), keras_depth, atol=1e-2)


def test_onnx_resizes_the_transfer_model_to_its_skips_exact_size(tmp_path):
    """At 112x64 the transfer model resizes its 1/32 map (3 rows) to the 1/16 skip's 7: float32(7 / 3) * 3 floors to
    6 in ONNX unless export.exact_resize_scales raises the scale, and ONNX Runtime would refuse the file. MobileNet's
    stride-2 convolutions round 7 rows down to 3 as VGG16's pools do, with a fifth of VGG16's weights to convert."""
    keras.utils.set_random_seed(0)
    net = build_model("transfer", encoder="mobilenet-0.75", input_hw=(112, 64), depth_scale=DepthScale("metres"),
                      decoder_width=0.125)
    kernel, bias = net.get_layer("conv3").get_weights()
    net.get_layer("conv3").set_weights([kernel * 10.0, bias + 3.0])
    out = export.export_model(net, DepthScale("metres"), tmp_path / "transfer.onnx", fmt="onnx")
    model, _ = backends.load_depth_model(out)
    photos = random_rgb(1, (112, 64), seed=7)
    np.testing.assert_allclose(predict.predict_depth_m(model, photos), predict.predict_depth_m(net, photos),
                               atol=FLOAT_TOLERANCE_M)


def test_int8_runs_and_evaluate_reports_its_delta1_beside_the_keras_models(run_dir, exported, net, tmp_path):
    int8 = str(exported["tflite", "int8"])
    keras_path = str(run_dir / "model.keras")
    data = json.loads((run_dir / "args.json").read_text())["data"]
    args = evaluate.parse_args(["--model", keras_path, "--model", int8, "--data", data, "--out", str(tmp_path)])
    assert evaluate.main(args) == 0
    table = (tmp_path / "table.md").read_text()
    assert f"| {int8} | {data} [test], 3 images |" in table
    # Both carry the same recorded training mean (the .keras file's config, the export's sidecar): one fair row.
    assert (f"| constant: training-set mean depth of {keras_path} and {int8} ({TRAIN_MEAN_DEPTH_M:.2f} m), the fair "
            f"baseline | {data} [test], 3 images |") in table
    metrics = json.loads((tmp_path / "metrics.json").read_text())["models"]
    int8_delta1 = metrics["run_model_int8"]["metrics"]["delta1"]
    print(f"int8 delta1 {int8_delta1:.4f}, Keras {metrics['run_model']['metrics']['delta1']:.4f}")
    assert abs(int8_delta1 - metrics["run_model"]["metrics"]["delta1"]) <= 0.05
    # Quantized for real: close to the float model's depth, but not equal to it.
    model, _ = backends.load_depth_model(int8)
    photos = random_rgb(2, INPUT_HW, seed=5)
    difference = np.abs(predict.predict_depth_m(model, photos) - predict.predict_depth_m(net, photos))
    assert 1e-4 < difference.mean() < 0.1


def test_export_cli_end_to_end_without_the_flip(run_dir, net, tmp_path):
    """The one run of `python export.py` as a user types it (--no-flip, and no TF_CPP_MIN_LOG_LEVEL of the user's):
    what it prints, no LiteRT note on standard error as it runs the file (backends' LiteRT runner, which predict.py
    runs too: "Created TensorFlow Lite XNNPACK delegate for CPU."), and a file without the flip inside, to which
    predict.py adds it: with and without the flip, the Keras model's depth."""
    out = tmp_path / "cli.tflite"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # a user's level asks for the logs
    run = subprocess.run([sys.executable, "export.py", "--model", str(run_dir / "model.keras"), "--format", "tflite",
                          "--no-flip", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {out} (") and "flip not included" in run.stdout, run.stdout
    assert "-> depth in metres 48x64, 0.1-10 m" in run.stdout, run.stdout
    assert "Traceback" not in run.stderr and "XNNPACK" not in run.stderr and "INFO:" not in run.stderr, run.stderr
    model, _ = backends.load_depth_model(out)
    assert not model.flips_inside
    photos = random_rgb(2, (30, 40), seed=6)
    for flip in (False, True):
        np.testing.assert_allclose(predict.predict_depth_m(model, photos, flip=flip),
                                   predict.predict_depth_m(net, photos, flip=flip), atol=FLOAT_TOLERANCE_M)
    photo = tmp_path / "photo.png"  # predict.py's command line (in-process) flips it by default
    Image.fromarray(photos[0]).save(photo)
    assert predict.main(predict.parse_args(["--model", str(out), str(photo), "--out", str(tmp_path / "p")])) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p" / "photo_depth.npy"), predict.predict_depth_m(net, photos[0]),
                               atol=FLOAT_TOLERANCE_M)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_missing_runtime_is_one_sentence_naming_the_package(exported, run_dir, tmp_path, monkeypatch, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(random_rgb(1, INPUT_HW)[0]).save(photo)
    for key, module, package in [(("onnx", "none"), "onnxruntime", "onnxruntime"),
                                 (("tflite", "none"), "ai_edge_litert.interpreter", "ai-edge-litert")]:
        with monkeypatch.context() as patched:
            patched.setitem(sys.modules, module, None)  # `import module` now raises ImportError
            args = predict.parse_args(["--model", str(exported[key]), str(photo), "--out", str(tmp_path / "out")])
            assert predict.main(args) == 2
        assert f"install it: pip install {package}" in one_error_line(capsys)
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    args = export.parse_args(["--model", str(run_dir / "model.keras"), "--format", "onnx", "--out",
                              str(tmp_path / "m.onnx")])
    assert export.main(args) == 2
    assert "pip install tf2onnx" in one_error_line(capsys)
    assert not (tmp_path / "m.onnx").exists()


def test_bad_model_files_are_one_sentence_and_exit_2(exported, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(random_rgb(1, INPUT_HW)[0]).save(photo)
    (tmp_path / "model.pt").write_bytes(b"not ours")
    (tmp_path / "fake.tflite").write_bytes(b"\x00" * 64)
    (tmp_path / "fake.onnx").write_bytes(b"not a protobuf")
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "alone.tflite").write_bytes(exported["tflite", "none"].read_bytes())  # no sidecar beside it
    expected = {"model.pt": "unknown model format '.pt'", "fake.tflite": "is not a LiteRT (.tflite) model",
                "fake.onnx": "is not an ONNX model", "empty_folder": "without saved_model.pb",
                "alone.tflite": "has no alone.tflite.json beside it", "nowhere.onnx": "no model file at"}
    for name, message in expected.items():
        args = predict.parse_args(["--model", str(tmp_path / name), str(photo), "--out", str(tmp_path / "out")])
        assert predict.main(args) == 2
        err = one_error_line(capsys)
        assert message in err and name in err
    args = evaluate.parse_args(["--model", str(tmp_path / "fake.tflite"), "--data", str(tmp_path)])
    assert evaluate.main(args) == 2
    assert "is not a LiteRT (.tflite) model" in one_error_line(capsys)


def test_calibration_reads_the_training_split_the_runs_args_json_names(run_dir, tmp_path):
    """export.training_split: --data's training split, else the run's own (its --train-split, a mixture's first
    dataset with its train= option, an args.json saved before --train-split: 'auto'), and nothing renders."""
    data = json.loads((run_dir / "args.json").read_text())["data"]  # nyu_data.zip: 6 train, 3 test frames

    def split_of(saved: dict | None, data_flag=None):
        run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        run.mkdir()
        if saved is not None:
            (run / "args.json").write_text(json.dumps(saved))
        split = export.training_split(model_path=run / "model.keras", data=data_flag)
        return split.name, len(split)

    assert split_of({"data": data, "train_split": "auto"}) == ("train", 6)
    assert split_of({"data": data, "train_split": "test"}) == ("test", 3)
    assert split_of({"data": data}) == ("train", 6)
    assert split_of({"data": [f"{data}:train=test", f"{data}:weight=2"], "train_split": "auto"}) == ("test", 3)
    assert split_of(None, data_flag=data) == ("train", 6)
    assert split_of({"data": data, "train_split": "test"}, data_flag=data) == ("train", 6)  # --data wins
    for saved in (None, {"model": "unet"}):
        with pytest.raises(ValueError, match="pass --data"):
            split_of(saved)


def test_export_refuses_what_it_cannot_do_in_one_sentence(run_dir, tmp_path, capsys):
    lone = tmp_path / "lone" / "model.keras"  # no args.json beside it: nothing names its training data
    lone.parent.mkdir()
    lone.write_bytes((run_dir / "model.keras").read_bytes())
    cases = {("--model", str(lone), "--format", "tflite", "--quantize", "int8"): "pass --data",
             ("--model", str(run_dir / "model.keras"), "--format", "onnx", "--quantize", "int8",
              "--out", str(tmp_path / "q.onnx")): "--quantize int8 is for --format tflite",
             ("--model", str(tmp_path / "missing.keras"), "--format", "onnx"): "no model file at"}
    for argv, message in cases.items():
        assert export.main(export.parse_args(list(argv))) == 2
        assert message in one_error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:  # predict.py tells the formats apart by the extension
        export.parse_args(["--model", str(lone), "--format", "tflite", "--out", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert "--out for --format tflite must be a .tflite file" in capsys.readouterr().err
