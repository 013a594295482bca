"""The squeezenet encoder: SqueezeNet v1.1 from keras-squeezenet's ImageNet file (../shared/weights when present,
else a file this test writes in the same Keras 1 layout), read by layer name, with Caffe preprocessing inside the
model, and one-sentence refusals of a file that does not fit. The mobilenet encoders: MobileNet v1 at alpha 1 and
0.75 from Keras Applications' file layout (../shared/weights' when present), [-1, 1] inputs, and a file of
another width refused in one sentence."""
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from encoders import squeezenet
from model import build_transfer, encoder_layer_names

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights"
SQUEEZENET_FILE = SHARED_WEIGHTS / "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"
MOBILENET_FILE = SHARED_WEIGHTS / "mobilenet_7_5_224_tf_no_top.h5"
HW = (48, 80)


def write_keras1_weights(model: keras.Model, path: Path, drop=()) -> None:
    """`model`'s weights in the Keras 1/2 weights-only HDF5 layout keras-squeezenet ships: root attribute
    layer_names, one group per layer named "fire2/squeeze1x1", its arrays listed in weight_names."""
    with h5py.File(path, "w") as f:
        names = []
        for layer in model.layers:
            if layer.name in drop:
                continue
            file_name = layer.name.replace("_", "/", 1) if layer.name.startswith("fire") else layer.name
            names.append(file_name.encode())
            group = f.create_group(file_name)
            weight_names = [f"{file_name}/w{i}".encode() for i in range(len(layer.weights))]
            group.attrs["weight_names"] = np.array(weight_names, dtype="S") if weight_names else np.array([])
            for weight_name, variable in zip(weight_names, layer.weights):
                group[weight_name.decode()] = variable.numpy()
        f.attrs["layer_names"] = np.array(names, dtype="S")


def random_squeezenet(seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    bare = squeezenet(keras.Input((*HW, 3)))
    for v in bare.weights:  # non-zero biases too, so a bias left unread would show
        v.assign(np.random.default_rng(seed).normal(0, 0.1, v.shape).astype("float32"))
    return bare


def test_a_keras1_layout_file_fills_every_layer_by_name(tmp_path):
    bare = random_squeezenet()
    path = tmp_path / "squeezenet_notop.h5"
    write_keras1_weights(bare, path)

    model = build_transfer("squeezenet", encoder_weights=str(path), input_hw=HW)
    layers = [layer for layer in bare.layers if layer.weights]
    assert len(layers) == 1 + 8 * 3  # conv1 and three convolutions per fire module
    for layer in layers:
        for expected, got in zip(layer.weights, model.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_a_file_missing_a_layer_is_named(tmp_path):
    path = tmp_path / "partial.h5"
    write_keras1_weights(random_squeezenet(), path, drop=("fire7_expand3x3",))
    with pytest.raises(ValueError, match=r"partial\.h5 has no weights for layer 'fire7_expand3x3'"):
        build_transfer("squeezenet", encoder_weights=str(path), input_hw=HW)


def test_a_file_of_another_shape_is_named(tmp_path):
    path = tmp_path / "wide.h5"
    wider = keras.Sequential([keras.Input((*HW, 3)), keras.layers.Conv2D(96, 3, name="conv1")])
    write_keras1_weights(wider, path)
    with pytest.raises(ValueError, match=r"wide\.h5: layer 'conv1' has weights of shapes .*96.* needs .*64"):
        build_transfer("squeezenet", encoder_weights=str(path), input_hw=HW)


def test_the_model_applies_caffe_preprocessing():
    """The Caffe release's convention (keras-squeezenet's README, ../shared/weights/README.md): BGR in [0, 255]
    minus the ImageNet BGR mean [103.939, 116.779, 123.68], no scaling."""
    model = build_transfer("squeezenet", input_hw=HW)
    first_conv_input = keras.Model(model.input, model.get_layer("conv1").input)
    rgb = np.zeros((1, *HW, 3), "float32")
    rgb[..., :] = [1.0, 0.5, 0.0]
    got = first_conv_input(rgb).numpy()[0, 0, 0]
    np.testing.assert_allclose(got, [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], atol=1e-4)


@pytest.mark.skipif(not SQUEEZENET_FILE.is_file(), reason=f"no {SQUEEZENET_FILE} (the workplace's ../shared/weights)")
def test_the_real_imagenet_file_loads_into_the_encoder():
    model = build_transfer("squeezenet", encoder_weights=str(SQUEEZENET_FILE), input_hw=HW)
    with h5py.File(SQUEEZENET_FILE, "r") as f:
        group = f["fire5/expand3x3"]
        kernel_name, bias_name = (n.decode() for n in group.attrs["weight_names"])
        np.testing.assert_array_equal(model.get_layer("fire5_expand3x3").kernel.numpy(), group[kernel_name][()])
        np.testing.assert_array_equal(model.get_layer("conv1").bias.numpy(), f["conv1"]["conv1_b"][()])
    encoder_parameters = sum(
        int(np.prod(v.shape)) for layer in model.layers if layer.name.startswith(("conv1", "fire")) for v in layer.weights
    )
    assert encoder_parameters == 722_496  # the file's README


# ---------------------------------------------------------------------------
# MobileNet v1
# ---------------------------------------------------------------------------

def random_mobilenet(alpha: float, seed=0) -> keras.Model:
    bare = keras.applications.MobileNet(include_top=False, weights=None, alpha=alpha, input_shape=(32, 32, 3))
    for v in bare.weights:
        v.assign(np.random.default_rng(seed).uniform(0.5, 1.0, v.shape).astype("float32"))
    return bare


def test_a_mobilenet_file_fills_the_encoder_of_its_width_and_refuses_the_other(tmp_path):
    path = tmp_path / "mobilenet_7_5_notop.h5"
    bare = random_mobilenet(0.75)
    write_keras1_weights(bare, path)  # the Keras Applications layout: layer_names, conv1 holding conv1/kernel ...

    model = build_transfer("mobilenet-0.75", encoder_weights=str(path), input_hw=(32, 48))
    assert model.output_shape == (None, 16, 24, 1)
    for layer in (layer for layer in bare.layers if layer.weights):
        for expected, got in zip(layer.weights, model.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(got.numpy(), expected.numpy())
    with pytest.raises(ValueError) as refused:
        build_transfer("mobilenet", encoder_weights=str(path), input_hw=(32, 48))
    assert str(refused.value) == (f"{path} holds MobileNet weights of alpha 0.75 (conv1 has 24 filters), but the "
                                  "mobilenet encoder has alpha 1: use the mobilenet-0.75 encoder (--encoder "
                                  "mobilenet-0.75)")


def test_mobilenet_takes_inputs_in_minus_one_to_one():
    """keras.applications.mobilenet.preprocess_input's convention: RGB x in [0, 255] -> x / 127.5 - 1."""
    model = build_transfer("mobilenet", input_hw=(32, 32))
    first_conv_input = keras.Model(model.input, model.get_layer("conv1").input)
    rgb = np.zeros((1, 32, 32, 3), "float32")
    rgb[..., :] = [1.0, 0.5, 0.0]
    np.testing.assert_allclose(first_conv_input(rgb).numpy()[0, 0, 0],
                               keras.applications.mobilenet.preprocess_input(np.array([255.0, 127.5, 0.0])), atol=1e-6)


@pytest.mark.skipif(not MOBILENET_FILE.is_file(), reason=f"no {MOBILENET_FILE} (the workplace's ../shared/weights)")
def test_the_real_mobilenet_imagenet_file_loads_into_the_encoder():
    model = build_transfer("mobilenet-0.75", encoder_weights=str(MOBILENET_FILE), input_hw=(32, 48))
    with h5py.File(MOBILENET_FILE, "r") as f:
        np.testing.assert_array_equal(model.get_layer("conv_pw_13").kernel.numpy(), f["conv_pw_13"]["conv_pw_13/kernel"][()])
        np.testing.assert_array_equal(model.get_layer("conv1_bn").moving_variance.numpy(),
                                      f["conv1_bn"]["conv1_bn/moving_variance"][()])
    encoder_parameters = sum(int(np.prod(v.shape)) for name in encoder_layer_names(model)
                             for v in model.get_layer(name).weights)
    assert encoder_parameters == 1_832_976  # the file's README
