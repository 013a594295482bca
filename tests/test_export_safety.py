"""export.py and backends.py with a user's files at stake (issue 23): an export never replaces what it did not write,
a SavedModel --model is scanned for file, print and Python ops before it runs, an int8 export is int8 or nothing,
and every such refusal is one sentence with exit 2 and the files on disk as they were."""
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import backends
import export
from test_export import INPUT_HW, exported, one_error_line, run_dir  # noqa: F401  the shared fixtures


def snapshot(*folders: Path) -> dict:
    """{path: bytes (None for a folder)} of everything under folders: what "nothing was deleted or changed"
    compares."""
    return {path: (None if path.is_dir() else path.read_bytes())
            for folder in folders for path in [folder, *sorted(folder.rglob("*"))]}


def export_main(*argv) -> int:
    return export.main(export.parse_args(list(argv)))


def copy_export(path: Path, out: Path) -> Path:
    """A copy at `out` of the export export.py wrote at `path` (a file or a SavedModel folder) and of its sidecar:
    an export as export.py leaves it, without paying for another conversion."""
    if path.is_dir():
        shutil.copytree(path, out)
    else:
        shutil.copyfile(path, out)
    shutil.copyfile(backends.sidecar_path(path), backends.sidecar_path(out))
    return out


def test_export_refuses_to_replace_what_it_did_not_write(run_dir, tmp_path, monkeypatch, capsys):
    """--out naming a folder with other files, the run directory, the working folder (`--out .`), another
    program's .tflite or a sidecar path holding someone's JSON: exit 2, one sentence, every file as it was."""
    model = str(run_dir / "model.keras")
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "notes.txt").write_text("mine")
    (exports / "old.onnx").write_bytes(b"an earlier export the user keeps")
    (tmp_path / "theirs.tflite").write_bytes(b"another program's LiteRT model")
    (tmp_path / "new.onnx.json").write_text('{"a user\'s": "settings"}')
    (tmp_path / "plain_file").write_text("not a folder")
    monkeypatch.chdir(exports)
    before = snapshot(tmp_path, run_dir)
    cases = {("savedmodel", str(exports)): f"--out {exports} is an existing folder that is not a savedmodel export",
             ("savedmodel", "."): "--out . is an existing folder that is not a savedmodel export",
             ("savedmodel", str(run_dir)): f"--out {run_dir} is an existing folder",
             ("savedmodel", str(tmp_path / "plain_file")): "plain_file is an existing file that is not a savedmodel",
             ("tflite", str(tmp_path / "theirs.tflite")): "theirs.tflite is an existing file that is not a tflite",
             ("onnx", str(tmp_path / "new.onnx")): f"{tmp_path / 'new.onnx.json'} exists and is not the description"}
    for (fmt, out), message in cases.items():
        assert export_main("--model", model, "--format", fmt, "--out", out) == 2, out
        err = one_error_line(capsys)
        assert message in err and "choose" in err, err
    assert snapshot(tmp_path, run_dir) == before
    assert not list(tmp_path.rglob(".export-*")) and not list(run_dir.glob(".export-*"))


def test_export_replaces_its_own_export(run_dir, exported, tmp_path, capsys):
    """A SavedModel export.py wrote (recognised by its sidecar and its entries) is replaced by the next export to
    the same --out; a file added inside the SavedModel makes it the user's again. (An empty folder made ahead is
    replaced too: test_export's write_run exports the run's SavedModel into one.)"""
    model = str(run_dir / "model.keras")
    out = copy_export(exported["savedmodel", "none"], tmp_path / "sm")  # export.main's, with the flip
    first = (out / "saved_model.pb").stat().st_mtime_ns
    assert export_main("--model", model, "--format", "savedmodel", "--out", str(out), "--no-flip") == 0
    assert (out / "saved_model.pb").stat().st_mtime_ns != first
    info = json.loads(backends.sidecar_path(out).read_text())
    assert info["flip"] is False and info["depth_step_m"] is None and info["max_abs_diff_m"] < 1e-4  # float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm", "sm.json"]  # no staging folder left behind
    capsys.readouterr()
    (out / "my_notes.txt").write_text("mine")
    assert export_main("--model", model, "--format", "savedmodel", "--out", str(out)) == 2
    assert "is an existing folder that is not a savedmodel export" in one_error_line(capsys)
    assert (out / "my_notes.txt").read_text() == "mine"


def write_hostile_saved_model(folder: Path, marker: Path, op: str) -> Path:
    """A SavedModel shaped like export.py's (a `serve` endpoint from RGB [B, 48, 64, 3] to 2 m of depth, and its
    sidecar) whose serving function also writes `marker`: by tf.io.write_file (WriteFile), or by tf.print to a
    file:// stream inside a while loop's body (PrintV2 in a function no PartitionedCall reaches)."""
    import tensorflow as tf

    def print_once(i):
        with tf.control_dependencies([tf.print("printed by a model", output_stream=f"file://{marker}")]):
            return i + 1

    class Hostile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, *INPUT_HW, 3], tf.float32)])
        def serve(self, x):
            if op == "WriteFile":
                tf.io.write_file(str(marker), "written by a model")
            else:
                tf.while_loop(lambda i: i < 1, print_once, [tf.constant(0)])
            return tf.fill([tf.shape(x)[0], *INPUT_HW, 1], 2.0)

    tf.saved_model.save(Hostile(), str(folder))
    info = backends.ExportInfo("savedmodel", INPUT_HW, INPUT_HW, 0.1, 10.0, flip=True)
    backends.sidecar_path(folder).write_text(json.dumps(dataclasses.asdict(info)))
    return folder


@pytest.mark.parametrize("op", ["WriteFile", "PrintV2"])
def test_a_savedmodel_that_writes_files_is_refused_unless_trusted(op, tmp_path, capsys):
    """predict.py and evaluate.py scan a SavedModel --model before loading it: one sentence naming the op, the
    folder and --trust-saved-model, exit 2, the file it would write not written; trusted on purpose, it runs."""
    import predict
    import evaluate
    from PIL import Image

    marker = tmp_path / "marker.txt"
    hostile = write_hostile_saved_model(tmp_path / "hostile", marker, op)
    Image.fromarray(np.zeros((*INPUT_HW, 3), np.uint8)).save(tmp_path / "photo.png")
    predict_argv = ["--model", str(hostile), str(tmp_path / "photo.png"), "--out", str(tmp_path / "out")]
    assert predict.main(predict.parse_args(predict_argv)) == 2
    err = one_error_line(capsys)
    assert f"{hostile} holds the TensorFlow op {op} in function " in err and "pass --trust-saved-model" in err, err
    assert evaluate.main(evaluate.parse_args(["--model", str(hostile), "--data", str(tmp_path)])) == 2
    assert f"holds the TensorFlow op {op}" in one_error_line(capsys)
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert predict.main(predict.parse_args([*predict_argv, "--trust-saved-model"])) == 0
    assert "by a model" in marker.read_text()  # the scan was all that stood between the file and the disk
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "photo_depth.npy"), 2.0)


def test_our_own_savedmodel_passes_the_scan_with_its_checkpoint_ops(exported, tmp_path):
    """export.py's SavedModel holds SaveV2, RestoreV2 and MergeV2Checkpoints in its saver's functions only:
    allowed there, and the export loads without the trust flag; the same ops called from serving are refused."""
    import opscan
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    out = exported["savedmodel", "none"]  # export.main's, at its defaults
    proto = saved_model_pb2.SavedModel.FromString((out / "saved_model.pb").read_bytes())
    ops = {node.op for function in proto.meta_graphs[0].graph_def.library.function for node in function.node_def}
    assert {"SaveV2", "RestoreV2", "MergeV2Checkpoints"} <= ops
    assert opscan.denied_ops(out) == {}
    model, _ = backends.load_depth_model(out)
    assert model(np.zeros((1, *INPUT_HW, 3), np.float32)).shape == (1, *INPUT_HW, 1)

    class Saver(tf.Module):  # a serving function that saves a checkpoint where it likes
        def __init__(self):
            self.v = tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def serve(self, x):
            tf.raw_ops.SaveV2(prefix=str(tmp_path / "ckpt"), tensor_names=["v"], shape_and_slices=[""],
                              tensors=[self.v.read_value()])
            return x

    tf.saved_model.save(Saver(), str(tmp_path / "saver"))
    assert set(opscan.denied_ops(tmp_path / "saver")) == {"SaveV2"}


def run_with_unreadable_training_images(run_dir, folder: Path, unreadable: int) -> Path:
    """A copy of the run's model whose args.json names a nyu_data.zip of 6 training frames, the first
    `unreadable` of them with RGB bytes no decoder reads."""
    import nyu_layouts as L

    files = L.densedepth_files(L.make_frames(6, hw=INPUT_HW, seed=1), L.make_frames(2, hw=INPUT_HW, seed=2))
    for i in range(unreadable):
        files[f"data/nyu2_train/room_{i % 2}_out/{i}.jpg"] = b"not a JPEG"
    folder.mkdir()
    data = L.write_zip(folder / "nyu_data.zip", files)
    (folder / "model.keras").write_bytes((run_dir / "model.keras").read_bytes())
    (folder / "args.json").write_text(json.dumps({"data": str(data), "train_split": "auto", "model": "unet"}))
    return folder / "model.keras"


@pytest.mark.parametrize("unreadable", [6, 4])
def test_int8_with_too_few_readable_calibration_images_writes_nothing(unreadable, run_dir, tmp_path, capsys):
    """No readable training image (LiteRT then quietly writes float32) or fewer than half of those asked for:
    one sentence with the count and the first unreadable frame, exit 2, no file, sidecar or staging folder."""
    model = run_with_unreadable_training_images(run_dir, tmp_path / "run", unreadable)
    out = tmp_path / "run" / "model_int8.tflite"
    before = snapshot(tmp_path)
    assert export_main("--model", str(model), "--format", "tflite", "--quantize", "int8",
                       "--calibration-frames", "6") == 2
    err = one_error_line(capsys)
    assert f"int8 calibration read {6 - unreadable} of the 6 training images" in err and "needs at least 3" in err
    assert "the first unreadable: " in err and "0.jpg" in err and "nothing was written" in err, err
    assert not out.exists() and not backends.sidecar_path(out).exists()
    assert snapshot(tmp_path) == before


def test_a_tflite_is_what_its_sidecar_says(run_dir, exported, tmp_path, monkeypatch, capsys):
    """With one of 6 training images unreadable (the shared run's data) int8 is written and computes in int8
    (LiteRT's own tensors say so, as its sidecar does); a converter that leaves the model float32 while int8 was
    asked for writes nothing."""
    import zipfile
    from test_export import INT8_PRINTED, UNREADABLE_TRAINING_RGB

    data = json.loads((run_dir / "args.json").read_text())["data"]
    with zipfile.ZipFile(data) as archive:  # what the run's int8 export calibrated on: 5 readable of 6
        assert archive.read(UNREADABLE_TRAINING_RGB) == b"not a JPEG"
        assert len([n for n in archive.namelist() if n.startswith("data/nyu2_train/") and n.endswith(".jpg")]) == 6
    out = exported["tflite", "int8"]
    info = json.loads(backends.sidecar_path(out).read_text())
    assert info["quantize"] == "int8" and export.tflite_quantization(out) == "int8"
    # Its depth comes in the steps the sidecar states (256 levels of the output's scale), and the printed check
    # is the largest difference from the Keras model on the calibration images.
    assert 0.01 < info["depth_step_m"] < 0.06 and 0 < info["max_abs_diff_m"] < 1.0
    assert (f"in steps of {info['depth_step_m']:.3g} m (int8: 256 levels)"
            in (run_dir.parent / INT8_PRINTED).read_text())
    depth = backends.load_depth_model(out)[0](np.random.default_rng(0).random((2, *INPUT_HW, 3), np.float32))
    levels = (np.unique(depth) - depth.min()) / info["depth_step_m"]
    np.testing.assert_allclose(levels, levels.round(), atol=1e-3)

    def read_but_keep_float32(converter, calibration):  # LiteRT's fall-back when calibration yields nothing
        list(calibration())

    model = run_with_unreadable_training_images(run_dir, tmp_path / "run", 1)
    out = tmp_path / "run" / "model_int8.tflite"
    monkeypatch.setitem(export.CONVERTER_SETTINGS, "int8", read_but_keep_float32)
    assert export_main("--model", str(model), "--format", "tflite", "--quantize", "int8",
                       "--calibration-frames", "6") == 2
    assert ("computing in float32, not the int8 weights and activations --quantize int8 asks for; nothing was "
            "written") in one_error_line(capsys)
    assert sorted(p.name for p in out.parent.iterdir()) == ["args.json", "model.keras", "nyu_data.zip"]


def test_a_mixed_precision_model_exports_its_float32_computation(tmp_path, capsys):
    """A UNet trained under mixed_bfloat16 (train.py --mixed-precision on a CPU) exports to .tflite and .onnx that
    load in their runtimes and match the same weights computed in float32 within the float exports' 1e-3 m."""
    import keras
    import predict
    from depth import DepthScale
    from model import build_unet
    from test_export import FLOAT_TOLERANCE_M, random_rgb, tiny_inverse_unet

    reference = tiny_inverse_unet(seed=3)  # float32
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_unet(INPUT_HW, base_filters=4, depth_scale=DepthScale("inverse"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(reference.get_weights())
    assert mixed.get_layer("output_conv").compute_dtype == "bfloat16"
    mixed.save(tmp_path / "model.keras")
    photos = random_rgb(2, INPUT_HW, seed=8)
    expected = predict.predict_depth_m(reference, photos)
    for fmt, name in [("tflite", "model.tflite"), ("onnx", "model.onnx")]:
        assert export_main("--model", str(tmp_path / "model.keras"), "--format", fmt) == 0, capsys.readouterr().err
        model, _ = backends.load_depth_model(tmp_path / name)
        np.testing.assert_allclose(predict.predict_depth_m(model, photos), expected, atol=FLOAT_TOLERANCE_M)


def test_an_export_its_runtime_cannot_run_is_not_written(run_dir, tmp_path, monkeypatch, capsys):
    """A writer whose file ONNX Runtime rejects (here: one that writes bytes that are no model): one sentence naming
    --out and the runtime, exit 2, no file, no sidecar, no staging folder."""
    monkeypatch.setitem(export.WRITERS, "onnx", lambda metres, path, *rest: path.write_bytes(b"\x08\x07 not a graph"))
    out = tmp_path / "model.onnx"
    assert export_main("--model", str(run_dir / "model.keras"), "--format", "onnx", "--out", str(out)) == 2
    err = one_error_line(capsys)
    assert f"the onnx export for {out} does not run in ONNX Runtime (" in err and "nothing was written" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_sidecar_that_disagrees_with_its_file_is_one_sentence(exported, tmp_path, capsys):
    """An .onnx beside a sidecar of another input size, or of "48x64" written by hand: predict.py and evaluate.py
    say which file describes what, exit 2 (a traceback from inside ONNX Runtime before)."""
    import evaluate
    import predict
    from PIL import Image
    from test_export import random_rgb

    out = copy_export(exported["onnx", "none"], tmp_path / "model.onnx")
    Image.fromarray(random_rgb(1, INPUT_HW)[0]).save(tmp_path / "photo.png")
    sidecar = backends.sidecar_path(out)
    info = json.loads(sidecar.read_text())
    expected = {(32, 40): f"{sidecar} describes an input of 32x40 RGB, but {out} itself takes ?x48x64x3: the two are "
                          "from different exports; export the model again",
                "48x64": f"{sidecar} is not an export description written by export.py (input_hw must be [height, "
                         "width] in pixels, got '48x64')"}
    for input_hw, message in expected.items():
        sidecar.write_text(json.dumps({**info, "input_hw": input_hw}))
        argv = ["--model", str(out), str(tmp_path / "photo.png"), "--out", str(tmp_path / "p")]
        assert predict.main(predict.parse_args(argv)) == 2
        assert message in one_error_line(capsys)
        assert evaluate.main(evaluate.parse_args(["--model", str(out), "--data", str(tmp_path)])) == 2
        assert message in one_error_line(capsys)
    assert not (tmp_path / "p").exists()


def dead_pid() -> int:
    """The process id of a process that has ended."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_export_never_leaves_a_model_beside_another_models_sidecar(run_dir, exported, tmp_path,
                                                                           monkeypatch, capsys):
    """Killed as the new model is moved in (no clean-up runs): the old model is gone and the new sidecar stands
    alone, which predict.py reports as no model file; the next export replaces the lone sidecar and removes the
    staging folder the killed one left, but not one of a running export nor a folder that is not ours."""
    import predict
    import staging
    import socket

    model = str(run_dir / "model.keras")
    out = copy_export(exported["tflite", "none"], tmp_path / "model.tflite")  # the model to be replaced
    replace = Path.replace

    def killed_at_the_last_rename(self, target):
        if Path(target) == out:
            raise KeyboardInterrupt  # as SIGKILL would stop it: nothing after this runs
        return replace(self, target)

    with monkeypatch.context() as killed:
        killed.setattr(Path, "replace", killed_at_the_last_rename)
        killed.setattr(export.shutil, "rmtree", lambda *args, **kwargs: None)  # a killed process cleans nothing
        with pytest.raises(KeyboardInterrupt):
            export_main("--model", model, "--format", "tflite", "--out", str(out), "--no-flip")
    assert not out.exists() and json.loads(backends.sidecar_path(out).read_text())["flip"] is False
    argv = ["--model", str(out), str(tmp_path), "--out", str(tmp_path / "p")]
    assert predict.main(predict.parse_args(argv)) == 2
    assert f"no model file at {out}" in one_error_line(capsys)
    (left,) = tmp_path.glob(".export-*")
    (left / staging.OWNER_FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    running = staging.staging_folder(tmp_path)  # this process's: an export still running
    (tmp_path / ".export-mine").mkdir()  # no owner file: not export.py's
    assert export_main("--model", model, "--format", "tflite", "--out", str(out), "--no-flip") == 0
    assert sorted(p.name for p in tmp_path.glob(".export-*")) == sorted([running.name, ".export-mine"])
    assert backends.load_depth_model(out)[0].flips_inside is False


@pytest.mark.parametrize("fault", ["tensorflow", "python"])
def test_a_full_disk_during_export_is_one_sentence(fault, run_dir, tmp_path, monkeypatch, capsys):
    """The disk fills while the SavedModel is written: TensorFlow's ResourceExhaustedError (its checkpoint
    writer's "No space left on device", a 48-line traceback before) or Python's OSError ENOSPC: one sentence
    naming --out and the fix, exit 2, and no file, sidecar or staging folder left."""
    import errno
    import tensorflow as tf

    def full_disk(metres, path, *rest):
        path.mkdir()
        (path / "saved_model.pb").write_bytes(b"half")
        data = path / "variables" / "variables.data-00000-of-00001"
        if fault == "tensorflow":
            raise tf.errors.ResourceExhaustedError(None, None, f"{{{{function_node __wrapped__SaveV2}}}} {data}."
                                                               "tempstate1; No space left on device [Op:SaveV2]")
        raise OSError(errno.ENOSPC, "No space left on device", str(data))

    monkeypatch.setitem(export.WRITERS, "savedmodel", full_disk)
    out = tmp_path / "model_savedmodel"
    assert export_main("--model", str(run_dir / "model.keras"), "--format", "savedmodel", "--out", str(out)) == 2
    err = one_error_line(capsys)
    assert err.startswith("error: cannot write ") and "No space left on device" in err, err
    assert err.endswith("free space or choose another --out; nothing was written"), err
    assert "function_node" not in err and list(tmp_path.iterdir()) == []
