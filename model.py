"""The depth networks: a small UNet and DenseDepth's transfer model on an ImageNet encoder.

Every model takes RGB float32 in [0, 1], shape [B, H, W, 3], and ends in a `DepthOutput` layer that
carries the model's `DepthScale`, so a saved `.keras` file knows how its output maps to metres (and, once
train.py has trained it, the mean depth of its training frames).
The UNet predicts at full resolution [B, H, W, 1]; the transfer model at half, [B, H/2, W/2, 1].
The encoders and their preprocessing are in encoders.py, their pretrained weights in weights.py.

    python model.py import-densedepth nyu.h5 --out densedepth_nyu.keras
converts DenseDepth's published Keras 2.2 weights into this file's densenet169 transfer model.
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import os
import sys
import zipfile

import h5py
import keras
import numpy as np

import nyu
from cli import user_error
from depth import DepthScale
from encoders import ENCODERS, KERASHUB_PREFIX, encoder_spec, is_kerashub
from weights import assign_keras2_weights, bundled_weights, is_keras2_model, load_encoder_weights, read_keras2_weights


# ---------------------------------------------------------------------------
# The output layer that records the depth scale
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="depth")
class DepthOutput(keras.layers.Identity):
    """Identity on the predicted depth [B, h, w, 1]; its config holds the model's DepthScale, the mean depth
    in metres of its training frames (`train_mean_depth_m`, recorded by train.py; None for a model not trained
    by it, or saved before train.py recorded it), so a saved model knows its fair constant baseline, and which
    frames those were (`train_data`, e.g. "600 frames of data/synth [train]"; None when not recorded).

    Registered with Keras, so `keras.models.load_model(path)` restores it once this module is imported.
    """

    def __init__(self, mode, min_depth_m, max_depth_m, train_mean_depth_m=None, train_data=None, relative=False,
                 **kwargs):
        kwargs.setdefault("dtype", "float32")  # under mixed precision the model still outputs float32
        super().__init__(**kwargs)
        self.depth_scale = DepthScale(mode, min_depth_m, max_depth_m)
        self.train_mean_depth_m = train_mean_depth_m
        self.train_data = train_data
        self.relative = bool(relative)  # depth up to an unknown scale and shift (kerashub.RelativeToRange), not metres

    def get_config(self):
        return {**super().get_config(), **self.depth_scale.to_config(), "train_mean_depth_m": self.train_mean_depth_m,
                "train_data": self.train_data, "relative": self.relative}


def depth_output(model: keras.Model) -> DepthOutput:
    """The model's final `DepthOutput` layer; ValueError for a model that does not end in one."""
    final = model.layers[-1]
    if not isinstance(final, DepthOutput):
        raise ValueError(
            f"model {model.name!r} ends in {type(final).__name__} {final.name!r}, not a DepthOutput, "
            "so it does not record its depth scale; build it with this model.py"
        )
    return final


def depth_scale_of(model: keras.Model) -> DepthScale:
    """The DepthScale stored in the model's final `DepthOutput` layer."""
    return depth_output(model).depth_scale


def train_mean_depth_of(model: keras.Model) -> float | None:
    """The mean depth in metres of the model's training frames, as train.py recorded it in its DepthOutput
    (record_train_mean_depth); None when nothing recorded it."""
    return depth_output(model).train_mean_depth_m


def is_relative(model) -> bool:
    """Whether the model predicts relative depth (its DepthOutput says so), not metres; False for anything else
    (an export by export.py)."""
    return isinstance(model, keras.Model) and getattr(model.layers[-1], "relative", False)


def train_data_of(model: keras.Model) -> str | None:
    """Which frames the model's recorded mean depth is over, as train.py recorded it; None when nothing did."""
    return depth_output(model).train_data


def record_train_mean_depth(model: keras.Model, depth_m: float, data: str | None = None) -> None:
    """Store depth_m (metres), the mean depth of the training frames described by `data`, in the model's
    DepthOutput config, saved with every .keras file written after."""
    depth_output(model).train_mean_depth_m = float(depth_m)
    depth_output(model).train_data = data


# ---------------------------------------------------------------------------
# The transfer model (DenseDepth, Alhashim & Wonka 2018)
# ---------------------------------------------------------------------------

PREPROCESS_PREFIX = "preprocess"  # the name prefix of the layers build_transfer puts before the encoder
DEFAULT_ENCODER = "densenet169"  # DenseDepth's
DEFAULT_DECODER_WIDTH = 0.5  # DenseDepth's code default (its published nyu.h5 uses 1.0)
DEFAULT_BASE_FILTERS = 32  # the UNet's first width
DEFAULT_PRESET = "depth_anything_v2_small"  # --model depth-anything's KerasHub preset (kerashub.py)


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
    encoder: str = DEFAULT_ENCODER,
    encoder_weights: str = "none",
    input_hw: tuple[int, int] = nyu.INPUT_HW,
    depth_scale: DepthScale = DepthScale(),
    preprocess: bool = True,
    decoder_width: float = DEFAULT_DECODER_WIDTH,
    name: str | None = None,
) -> keras.Model:
    """DenseDepth on an ImageNet encoder: RGB [B, H, W, 3] in [0, 1] -> encoded depth [B, H/2, W/2, 1].

    encoder: a key of ENCODERS, or kerashub:PRESET, a KerasHub backbone's pyramid (kerashub.encoder_features:
    the output is then at its shallowest level's size, H/4 for P2..P5). encoder_weights: "none", "imagenet", "hed"
    (vgg16 only) or a weights-file path (see `load_encoder_weights`); for kerashub:, "imagenet" or "preset" is the
    preset's own. preprocess: apply the preprocessing the encoder's weights were
    trained on inside the model (the encoder's ImageNet one, or the bundled weights' own); False feeds
    [0, 1] RGB straight in, as DenseDepth did. decoder_width: conv2's width as a fraction
    of the encoder's output channels (DenseDepth's code defaults to 0.5; its published nyu.h5 uses 1.0);
    the up blocks halve it four times. H and W must be at least 32; the layer names (conv2, up1..up4,
    conv3) are DenseDepth's. name defaults to "densedepth_<encoder>".
    """
    if min(input_hw) < 32:
        raise ValueError(f"the transfer model needs input height and width >= 32, got {input_hw}")
    image = keras.Input((*input_hw, 3), name="image")
    if is_kerashub(encoder):
        import kerashub  # keras-hub is imported only for its models

        features = kerashub.encoder_features(image, encoder.removeprefix(KERASHUB_PREFIX),
                                             encoder_weights=encoder_weights, input_hw=input_hw, preprocess=preprocess)
    else:
        spec = encoder_spec(encoder)
        bundled = bundled_weights(encoder, encoder_weights)
        normalize = bundled.preprocess if bundled is not None else spec.preprocess
        x = normalize(image, name=PREPROCESS_PREFIX) if preprocess else image
        backbone = spec.constructor(input_tensor=x)
        load_encoder_weights(backbone, encoder, encoder_weights)
        features = [backbone.get_layer(layer).output for layer in (spec.output, *spec.skips)]

    # features[0]: [B, H/32, W/32, C]; the rest, the skips, deepest first (1/16, 1/8, 1/4, 1/2 of the input)
    decode_filters = round(features[0].shape[-1] * decoder_width)
    x = keras.layers.Conv2D(decode_filters, 1, padding="same", name="conv2")(features[0])
    for i, skip in enumerate(features[1:], start=1):
        x = upproject_block(x, skip, decode_filters // 2**i, name=f"up{i}")
    x = keras.layers.Conv2D(1, 3, padding="same", name="conv3")(x)  # [B, H/2, W/2, 1]
    depth = DepthOutput(**depth_scale.to_config(), name="depth")(x)
    label = os.path.basename(encoder.removeprefix(KERASHUB_PREFIX).rstrip("/"))  # a preset folder: its name
    return keras.Model(image, depth, name=name or f"densedepth_{label}")


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


def set_encoder_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze (False) or unfreeze the transfer model's encoder layers (encoder_layer_names); takes effect at the
    next compile."""
    for name in encoder_layer_names(model):
        model.get_layer(name).trainable = trainable


def set_output_bias(model: keras.Model, value: float) -> None:
    """Set the bias of the layer feeding DepthOutput (the final 1-channel convolution of every model here) to
    `value`, the mean encoded target, so training starts from the trivial mean-depth prediction instead of an
    arbitrary one (a near-zero inverse-depth output decodes to the far limit)."""
    head = model.layers[-2]
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.full_like(bias, value)])


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
    input_hw: tuple[int, int] = nyu.INPUT_HW,
    base_filters: int = DEFAULT_BASE_FILTERS,
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


def build_depth_anything(**kwargs) -> keras.Model:
    """KerasHub's Depth Anything (DINOv2 + DPT) as a model of this project: kerashub.build_depth_anything(**kwargs)
    (RGB [B, H, W, 3] in [0, 1] -> encoded depth [B, H, W, 1]; H = W, a multiple of 14)."""
    import kerashub  # keras-hub is imported only for its models

    return kerashub.build_depth_anything(**kwargs)


BUILDERS = {"unet": build_unet, "transfer": build_transfer, "depth-anything": build_depth_anything}


def build_model(kind: str = "unet", synchronized_bn: bool = False, **kwargs) -> keras.Model:
    """Build a model of `kind` (a key of BUILDERS), passing kwargs to its builder (build_unet, build_transfer...).

    synchronized_bn: every BatchNormalization layer (the encoder's too) computes its batch statistics over all
    replicas of a tf.distribute strategy, as one device would on the global batch; build with True when
    training on more than one replica (Keras's `BatchNormalization(synchronized=True)`, TensorFlow only).
    """
    if kind not in BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {sorted(BUILDERS)}")
    model = BUILDERS[kind](**kwargs)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # Read when the layer is called and saved in its config: the keras.applications encoders take no
            # such argument, so it is set here once the layers exist.
            layer.synchronized = synchronized_bn
    return model


def architecture_of(model: keras.Model) -> dict:
    """The build_model arguments that made `model` (built here, or loaded from a .keras file of this project):
    {"kind", "input_hw", "depth_scale"} and the UNet's "base_filters" or the transfer model's "encoder" and
    "decoder_width". The transfer model's encoder is read from its name (build_transfer's "densedepth_<encoder>",
    import_densedepth's "densedepth": densenet169). ValueError for a model this file did not build."""
    names = {layer.name for layer in model.layers}
    found = {"input_hw": tuple(model.input_shape[1:3]), "depth_scale": depth_scale_of(model)}
    if {"down1_1_conv", "output_conv"} <= names:
        return {"kind": "unet", **found, "base_filters": model.get_layer("down1_1_conv").filters}
    encoder = "densenet169" if model.name == "densedepth" else model.name.removeprefix("densedepth_")
    if {"conv2", "conv3"} <= names and encoder in ENCODERS:
        kernel = model.get_layer("conv2").kernel  # [1, 1, encoder channels, decoder width]
        return {"kind": "transfer", **found, "encoder": encoder, "decoder_width": kernel.shape[-1] / kernel.shape[-2]}
    raise ValueError(f"model {model.name!r} ends in a DepthOutput but is neither model.py's UNet nor its transfer "
                     f"model on one of {sorted(ENCODERS)}; start from a model train.py saved")


def load_model(path) -> keras.Model:
    """Load a model saved as .keras by this project, uncompiled; `depth_scale_of` gives its DepthScale. Uncompiled:
    checkpoints saved before train.py compiled the optimizer alone name loss.py's former DepthLoss and DepthMetric in
    their compile state, which nothing here needs, so every loader of the project loads through this function.

    Raises FileNotFoundError for a missing file and ValueError naming the file and the fix for anything else
    that is not such a model: another kind of file, or DenseDepth's Keras 2 nyu.h5 / kitti.h5 (convert those
    with `python model.py import-densedepth`).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    if is_keras2_model(path):
        raise ValueError(f"{path} is a Keras 2 model file (as DenseDepth's nyu.h5); convert it first: "
                         f"python model.py import-densedepth {path} --out model.keras")
    if not (zipfile.is_zipfile(path) or h5py.is_hdf5(path)):
        raise ValueError(f"{path} is not a Keras model file (a .keras zip or an .h5); pass a model train.py saved")
    try:
        if zipfile.is_zipfile(path):
            import kerashub  # a model holding KerasHub layers needs keras_hub imported to load

            kerashub.import_if_used(path)
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types (ValueError, BadZipFile, OSError...) for a bad file
        raise ValueError(f"could not load a Keras model from {path}: {err}") from err


def import_densedepth(
    h5_path, input_hw: tuple[int, int] = nyu.FRAME_HW, depth_scale: DepthScale = DepthScale("inverse")
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
    width = conv2_kernel.shape[-1] / conv2_kernel.shape[-2]
    model = build_transfer("densenet169", encoder_weights="none", input_hw=input_hw, depth_scale=depth_scale,
                           preprocess=False, decoder_width=width, name="densedepth")
    assign_keras2_weights(model, file_weights_by_layer, h5_path)
    return model


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import-densedepth",
                              help="convert DenseDepth's Keras 2.2 nyu.h5/kitti.h5 into a .keras model")
    imp.add_argument("h5", help="DenseDepth's published full-model HDF5 file, e.g. nyu.h5")
    imp.add_argument("--out", required=True, help="where to write the converted model (.keras)")
    imp.add_argument("--input-size", type=int, nargs=2, default=list(nyu.FRAME_HW), metavar=("H", "W"),
                     help="input height and width of the converted model (default: DenseDepth's native "
                          f"{nyu.FRAME_HW[0]} {nyu.FRAME_HW[1]}); output is half")
    imp.add_argument("--min-depth-m", type=float, default=nyu.MIN_DEPTH_M,
                     help=f"nearest depth in metres the file was trained with (default: NYU's {nyu.MIN_DEPTH_M:g})")
    imp.add_argument("--max-depth-m", type=float, default=nyu.MAX_DEPTH_M,
                     help="farthest depth in metres the file was trained with; outputs are max/depth "
                          f"(default: NYU's {nyu.MAX_DEPTH_M:g})")
    args = parser.parse_args(argv)
    if not args.out.endswith(".keras"):
        parser.error(f"--out must end in .keras, got {args.out}")
    return args


def main(args: argparse.Namespace) -> int:
    """Convert the file; returns the exit code (2, with one sentence, for a missing or unreadable file)."""
    try:
        model = import_densedepth(args.h5, input_hw=tuple(args.input_size),
                                  depth_scale=DepthScale("inverse", args.min_depth_m, args.max_depth_m))
        model.save(args.out)
    except (OSError, ValueError) as err:  # read_keras2_weights' and the checks' one-sentence errors, or --out
        return user_error(f"{err}")
    print(f"wrote {args.out}: {model.count_params():,} parameters, input {model.input_shape}, "
          f"output {model.output_shape}, {depth_scale_of(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))

