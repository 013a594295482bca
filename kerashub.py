"""KerasHub (keras-hub) models in this project: Depth Anything V2 (a DINOv2 encoder under a DPT decoder) as
`--model depth-anything`, and any KerasHub backbone with `pyramid_outputs` as the transfer model's encoder
(`--encoder kerashub:PRESET`), with the input normalisation of the preset's image converter inside the model.

A preset is what KerasHub's `from_preset` takes: a built-in name (depth_anything_v2_small, dinov2_small,
resnet_50_imagenet, densenet_121_imagenet, ...; downloaded from Kaggle and cached by kagglehub), a kaggle:// or
hf:// handle, or a local folder written by `save_to_preset` (config.json, model.weights.h5 and, for the input
normalisation, image_converter.json). keras-hub is imported only when such a model is built or loaded.

    python kerashub.py relative depth_anything_v2_small --input-size 518 518 --out da_v2_small.keras
writes the preset as published, a relative-depth model (depth up to an unknown scale and shift), for
evaluate.py --align scale-shift and predict.py.
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import math
import os
import sys
import tempfile
import zipfile

import keras
import numpy as np

import nyu
from cli import user_error
from depth import DepthScale
from encoders import KERASHUB_PREFIX
from model import DEFAULT_PRESET, PREPROCESS_PREFIX, DepthOutput

PRESET_WEIGHTS = ("imagenet", "preset")  # --encoder-weights values meaning the preset's own pretrained weights
PYRAMID_LEVELS = (5, 4, 3, 2)  # the levels a ViT's tokens are laid out at, deepest first: 1/32 .. 1/4 (DPT's)
MAX_SKIPS = 4  # DenseDepth's decoder climbs at most four levels above the deepest


def import_keras_hub():
    """The keras_hub module, with DINOv2's save fixed (embeddings_updated); ModuleNotFoundError naming the package
    when it is not installed."""
    try:
        import keras_hub
        from keras_hub.src.models.dinov2.dinov2_layers import DINOV2Embedding
    except ImportError:
        raise ModuleNotFoundError("KerasHub models need the keras-hub package: pip install keras-hub") from None
    DINOV2Embedding._is_interpolated_position_embeddings_updated = embeddings_updated
    return keras_hub


def embeddings_updated(embedding) -> bool:
    """Whether a DINOv2 embedding layer's trained position embeddings differ from those it would interpolate from
    its stored ones, so saving must store them. KerasHub 0.32 asks whether the *signed sum* of the differences
    exceeds epsilon, so about half the trained models would silently lose their position embeddings' training
    on save; this asks whether any difference is non-zero."""
    interpolated = embedding._interpolate_position_embeddings(
        embedding.position_embeddings, patch_size=embedding.patch_size,
        source_shape=embedding.position_embedding_shape, target_shape=embedding.image_shape,
        antialias=embedding.antialias_in_interpolation)
    difference = keras.ops.abs(interpolated - embedding.interpolated_position_embeddings)
    return bool(keras.ops.convert_to_numpy(keras.ops.max(difference)) > 0)


def import_if_used(path) -> None:
    """Import keras_hub (registering its layers) when the .keras file at `path` holds KerasHub layers, so
    keras.models.load_model can rebuild them; a no-op for every other model."""
    with zipfile.ZipFile(path) as archive:
        if "config.json" in archive.namelist() and b'"keras_hub' in archive.read("config.json"):
            import_keras_hub()


# ---------------------------------------------------------------------------
# Presets: config and weights, with one sentence for what cannot be had offline
# ---------------------------------------------------------------------------

def cache_hint(preset: str) -> str:
    """Where KerasHub looks for a built-in preset's files (kagglehub's cache), or '' for other presets."""
    keras_hub = import_keras_hub()
    handle = keras_hub.models.Backbone.presets.get(preset, {}).get("kaggle_handle", "")
    if not handle.startswith("kaggle://"):
        return ""
    from kagglehub.config import get_cache_folder  # kagglehub comes with keras-hub

    owner, model, framework, variation, version = handle.removeprefix("kaggle://").split("/")
    folder = os.path.join(get_cache_folder(), "models", owner, model, framework, variation, version)
    return f"; offline, put its files (config.json, model.weights.h5, image_converter.json) in {folder}"


def from_preset(cls, preset: str, **kwargs):
    """cls.from_preset(preset, **kwargs), with any failure to find or fetch the preset as one ValueError naming
    it, what to do offline and the --encoder-weights none alternative (which still needs the preset's config)."""
    try:
        return cls.from_preset(preset, **kwargs)
    except (OSError, ValueError, ImportError) as err:  # requests' ConnectionError is an OSError
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"could not load the KerasHub preset {preset!r} ({reason[:160]}){cache_hint(preset)}; or pass a local "
            "preset folder written by save_to_preset (--encoder-weights none skips the weights but still needs "
            "its config.json)"
        ) from err


def wants_weights(encoder_weights: str) -> bool:
    """True for the preset's own weights ('preset', or 'imagenet', train.py's default), False for 'none';
    ValueError for anything else."""
    if encoder_weights not in (*PRESET_WEIGHTS, "none"):
        raise ValueError(f"a KerasHub model's --encoder-weights is 'preset' (its own) or 'none', not "
                         f"{encoder_weights!r}; a local preset folder goes in the preset itself")
    return encoder_weights != "none"


def dinov2_config(config: dict) -> dict | None:
    """The DINOv2 part of a backbone's get_config() (itself, or a Depth Anything's image_encoder): the dict
    holding image_shape and position_embedding_shape; None for a backbone without one (a CNN)."""
    for candidate in (config, config.get("image_encoder", {}).get("config", {})):
        if "position_embedding_shape" in candidate and "patch_size" in candidate:
            return candidate
    return None


def check_patch_grid(input_hw, patch_size: int, what: str) -> None:
    """ValueError unless input_hw is square with a side that is a multiple of patch_size (KerasHub's DINOv2
    takes square images only)."""
    if input_hw[0] != input_hw[1] or input_hw[0] % patch_size:
        side = max(patch_size, round(min(input_hw) / patch_size) * patch_size)
        raise ValueError(f"{what} (DINOv2, {patch_size}-pixel patches) needs a square input whose side is a multiple "
                         f"of {patch_size}, e.g. --input-size {side} {side} (Depth Anything V2 trains at 518 518); "
                         f"got {input_hw[0]}x{input_hw[1]}")


def sized_backbone(preset: str, input_hw, *, load_weights: bool, what: str):
    """The preset's backbone for RGB inputs of input_hw = (H, W), with its pretrained weights if load_weights.

    A CNN backbone takes any size as it is. A DINOv2 (alone or inside Depth Anything) is rebuilt for (H, W) with
    its position embeddings interpolated to H/14 x W/14 by KerasHub (bicubic, as DINOv2 does) and then stored at
    that size (position_embedding_shape = image_shape), so that saving and loading a trained model gives back
    exactly its weights: KerasHub would otherwise resample the trained embeddings to the preset's grid on save.
    """
    keras_hub = import_keras_hub()
    native = from_preset(keras_hub.models.Backbone, preset, load_weights=load_weights)  # built once: seconds
    config = native.get_config()
    dinov2 = dinov2_config(config)
    if dinov2 is None:
        return native
    check_patch_grid(input_hw, dinov2["patch_size"], what)
    shape = [*input_hw, 3]
    if list(dinov2["image_shape"]) == list(dinov2["position_embedding_shape"]) == shape:
        return native
    dinov2["image_shape"] = shape
    if load_weights:
        resized = type(native).from_config(config)  # embeddings still at the preset's grid, resampled on load
        with tempfile.TemporaryDirectory() as folder:
            native.save_weights(os.path.join(folder, "preset.weights.h5"))
            resized.load_weights(os.path.join(folder, "preset.weights.h5"))
        values = {v.path: v for v in resized.weights}
    dinov2["position_embedding_shape"] = shape
    backbone = type(native).from_config(config)
    if load_weights:
        for variable in backbone.weights:
            path = variable.path
            if variable.name == "position_embeddings":  # the preset's, interpolated to this input size
                path = path.removesuffix("position_embeddings") + "interpolated_position_embeddings"
            variable.assign(values[path])
    return backbone


def image_normalization(preset: str, name: str):
    """A Rescaling layer applying the preset's image converter to RGB in [0, 1]: x * 255 * scale + offset per
    channel (KerasHub's converters take [0, 255]). ValueError when the preset has no image_converter.json."""
    keras_hub = import_keras_hub()
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (OSError, ValueError) as err:
        raise ValueError(f"the KerasHub preset {preset!r} has no image converter ({err}), so its input normalisation "
                         "is unknown: save one into it with keras_hub.layers.ImageConverter(scale=..., offset=...)"
                         ".save_to_preset") from err
    scale = 255.0 * np.broadcast_to(np.asarray(converter.scale if converter.scale is not None else 1.0, "float32"), 3)
    offset = np.broadcast_to(np.asarray(converter.offset if converter.offset is not None else 0.0, "float32"), 3)
    return keras.layers.Rescaling(scale.tolist(), offset.tolist(), name=name)


# ---------------------------------------------------------------------------
# A KerasHub backbone as the transfer model's encoder
# ---------------------------------------------------------------------------

def token_grid(tokens, backbone, input_hw, name):
    """DINOv2 tokens [B, 1 + registers + h*w, C] -> their patch grid [B, h, w, C] (class and register tokens
    dropped), h, w = H/patch, W/patch."""
    leading = 1 + backbone.num_register_tokens
    x = keras.layers.Cropping1D((leading, 0), name=f"{name}_patches")(tokens)
    grid = (input_hw[0] // backbone.patch_size, input_hw[1] // backbone.patch_size)
    return keras.layers.Reshape((*grid, tokens.shape[-1]), name=f"{name}_grid")(x)


def vit_pyramid(features: dict, backbone, input_hw, name) -> list:
    """Four of a DINOv2's stages as maps at 1/32, 1/16, 1/8, 1/4 of the input, deepest first: DPT's reassembly
    (stages 3, 6, 9, 12 of 12, the last at 1/32), with bilinear resizing for its learned resampling."""
    stages = [key for key in features if key.startswith("stage")]
    picks = [stages[max(0, math.ceil(len(stages) * (i + 1) / 4) - 1)] for i in range(4)][::-1]  # deepest first
    maps = []
    for level, key in zip(PYRAMID_LEVELS, picks):
        grid = token_grid(features[key], backbone, input_hw, name=f"{name}_P{level}_{key}")
        size = [math.ceil(side / 2**level) for side in input_hw]
        maps.append(keras.layers.Resizing(*size, interpolation="bilinear", name=f"{name}_P{level}")(grid))
    return maps


def encoder_features(image, preset: str, *, encoder_weights: str, input_hw, preprocess: bool = True) -> list:
    """The feature maps of the KerasHub backbone `preset` on `image` (RGB [B, H, W, 3] in [0, 1]), deepest first:
    [deepest [B, h, w, C], then up to MAX_SKIPS shallower maps], for DenseDepth's decoder (model.build_transfer).

    A CNN's pyramid_outputs are taken by key, P5 (1/32) down to P2 (1/4; P1 at 1/2 where the backbone has it);
    a DINOv2's token stages are laid out at the same sizes (vit_pyramid). preprocess puts the preset's image
    converter (image_normalization) before the backbone. ValueError for a backbone without pyramid_outputs.
    """
    backbone = sized_backbone(preset, input_hw, load_weights=wants_weights(encoder_weights),
                              what=f"--encoder {KERASHUB_PREFIX}{preset}")
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not pyramid:
        raise ValueError(f"the KerasHub backbone {type(backbone).__name__} of preset {preset!r} has no pyramid_outputs "
                         "to feed a decoder; choose a DenseNet, ResNet, EfficientNet, MiT, CSPNet or DINOv2 preset")
    x = image_normalization(preset, f"{PREPROCESS_PREFIX}_image_converter")(image) if preprocess else image
    extractor = keras.Model(backbone.inputs, pyramid, name=f"{backbone.name}_pyramid")
    features = extractor(x)
    if dinov2_config(backbone.get_config()) is not None:
        return vit_pyramid(features, backbone, input_hw, name="reassemble")
    levels = sorted((key for key in features if key[:1] == "P" and key[1:].isdigit()), key=lambda k: -int(k[1:]))
    if len(levels) < 2:
        raise ValueError(f"the KerasHub backbone of preset {preset!r} gives pyramid outputs {sorted(features)}, not "
                         "P1..P5 maps the decoder can climb")
    return [features[key] for key in levels[:1 + MAX_SKIPS]]


# ---------------------------------------------------------------------------
# Depth Anything
# ---------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="depth")
class RelativeToRange(keras.layers.Layer):
    """Relative inverse depth [B, h, w, 1] (any scale and shift) -> the same map stretched per image onto
    [low, high], an inverse-depth DepthScale's value range, so decoding it never clips: its inverse is an affine
    function of the input, which evaluate.py --align scale-shift undoes exactly."""

    def __init__(self, low: float, high: float, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.low, self.high = float(low), float(high)

    def call(self, x):
        lo = keras.ops.min(x, axis=(1, 2, 3), keepdims=True)
        hi = keras.ops.max(x, axis=(1, 2, 3), keepdims=True)
        unit = (x - lo) / keras.ops.maximum(hi - lo, keras.config.epsilon())
        return self.low + (self.high - self.low) * unit

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}


def build_depth_anything(
    preset: str = DEFAULT_PRESET,
    encoder_weights: str = "preset",
    input_hw: tuple[int, int] = nyu.INPUT_HW,
    depth_scale: DepthScale = DepthScale(),
    relative: bool = False,
    name: str | None = None,
) -> keras.Model:
    """KerasHub's Depth Anything (DINOv2 encoder, DPT decoder) as a model of this project:
    RGB [B, H, W, 3] in [0, 1] -> encoded depth [B, H, W, 1] in depth_scale's units, ending in DepthOutput.

    preset: a Depth Anything preset (module docstring), at input_hw = (H, W), square with sides a multiple of 14.
    The preset's normalisation runs inside the model; its head's relative inverse depth goes through a ReLU (as
    KerasHub's DepthEstimator does for relative depth), then a 1x1 convolution (`depth_head`, weight 1 at the
    start; train.py sets its bias to the mean target) maps it to depth_scale's encoding, learning the scale and
    shift that make it metric. relative=True instead stretches it per image onto the range (RelativeToRange,
    inverse mode only) and marks the DepthOutput relative: the preset as published, depth up to scale and shift.
    """
    if relative and depth_scale.mode != "inverse":
        raise ValueError("a relative Depth Anything model predicts inverse depth: use the inverse depth mode")
    keras_hub = import_keras_hub()
    backbone = sized_backbone(preset, input_hw, load_weights=wants_weights(encoder_weights),
                              what="--model depth-anything")
    if not isinstance(backbone, keras_hub.models.DepthAnythingBackbone):
        raise ValueError(f"preset {preset!r} is a {type(backbone).__name__}, not a DepthAnythingBackbone: "
                         "--model depth-anything takes depth_anything_v2_{small,base,large} or such a preset's "
                         f"folder (--model transfer --encoder {KERASHUB_PREFIX}{preset} takes other backbones)")
    image = keras.Input((*input_hw, 3), name="image")
    x = image_normalization(preset, f"{PREPROCESS_PREFIX}_image_converter")(image)
    x = backbone(x)  # [B, H, W, 1] relative inverse depth
    x = keras.layers.ReLU(name="relative_inverse_depth")(x)
    if relative:
        x = RelativeToRange(*depth_scale.value_range, name="relative_to_range")(x)
    else:
        x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", name="depth_head")(x)
    depth = DepthOutput(**depth_scale.to_config(), relative=relative, name="depth")(x)
    return keras.Model(image, depth, name=name or f"depth_anything_{os.path.basename(preset.rstrip('/'))}")


# ---------------------------------------------------------------------------
# Command line: the published relative model as a .keras file
# ---------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    relative = commands.add_parser("relative", help="write a Depth Anything preset as a relative-depth .keras model")
    relative.add_argument("preset", help=f"a Depth Anything preset name or folder (e.g. {DEFAULT_PRESET})")
    relative.add_argument("--input-size", type=int, nargs=2, default=[518, 518], metavar=("H", "W"),
                          help="network input, square, a multiple of 14 (default 518 518, Depth Anything V2's)")
    relative.add_argument("--min-depth-m", type=float, default=nyu.MIN_DEPTH_M,
                          help=f"the depth range evaluate.py scores in (default {nyu.MIN_DEPTH_M:g})")
    relative.add_argument("--max-depth-m", type=float, default=nyu.MAX_DEPTH_M,
                          help=f"(default {nyu.MAX_DEPTH_M:g})")
    relative.add_argument("--out", required=True, help="the .keras file to write")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    try:
        net = build_depth_anything(args.preset, input_hw=tuple(args.input_size), relative=True,
                                   depth_scale=DepthScale("inverse", args.min_depth_m, args.max_depth_m))
    except (ValueError, ModuleNotFoundError) as err:
        return user_error(f"{err}")
    net.save(args.out)
    print(f"wrote {args.out}: {net.name}, relative depth (evaluate it with --align scale-shift)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args(sys.argv[1:])))
