"""Export a trained depth model for deployment: a SavedModel folder, a LiteRT flat buffer (.tflite) or ONNX.

    python export.py --model runs/unet/model.keras --format tflite --quantize int8

The exported graph maps float32 RGB [B, h, w, 3] in [0, 1] at the model's input size straight to depth in metres
[B, h', w', 1] at its output size: the model's DepthScale decoding and, unless --no-flip, DenseDepth's flip
average are inside it. Beside it, <file>.json (backends.ExportInfo) records the input and output sizes, the depth
range, the units and the mean training depth train.py recorded in the model (evaluate.py's fair baseline).
How each is made, with the ecosystem's tools: SavedModel by Keras's model.export; .tflite by TensorFlow's LiteRT
converter from that SavedModel (--quantize float16: float16 weights; int8: int8 weights and activations,
calibrated on --calibration-frames training images, of the data the run's args.json names or --data; inputs and
outputs stay float32); ONNX by tf2onnx from that SavedModel.
predict.py and evaluate.py take any of them as --model; ai-edge-litert runs .tflite, onnxruntime .onnx.
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cli import first_line, user_error
from backends import ExportInfo, import_runtime, info_json, read_info, sidecar_path
from data import frames
from depth import DepthScale
from exportcheck import QUANTIZATION_NAMES, RUNTIMES, check_runs, output_step_m, tflite_quantization
from inference import network_depth_m, resize_rgb
from layouts import DataError, Split, evenly_spaced
from mixtures import data_specs, open_mixtures
from splits import SkipLog
from model import depth_scale_of, load_model, train_mean_depth_of
from staging import check_replaceable, publish, remove_stale_staging, staging_folder

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_FRAMES = 100  # training images int8 calibration sees (TensorFlow's guide suggests ~100-500)
MIN_CALIBRATION_SHARE = 0.5  # of those, the part that must be readable for int8 ranges to be trusted
SAMPLE_IMAGES = 8  # calibration images an int8 export is compared with the Keras model on before it is reported
# format -> what --out must end with (a SavedModel is a folder, recognised by its saved_model.pb)
OUT_SUFFIXES = {"savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}


class MetresModel(keras.Model):
    """A depth network's prediction decoded to metres, flip-averaged when `flip`:
    RGB float32 [B, h, w, 3] in [0, 1] -> depth float32 [B, h', w', 1] in metres, clipped to the scale's range.

    inference.network_depth_m, the graph predict.predict_depth_m runs at the network's output size, as a
    Keras model that model.export can write.
    """

    def __init__(self, net: keras.Model, depth_scale: DepthScale, flip: bool, **kwargs):
        super().__init__(name=f"{net.name}_metres", **kwargs)
        self.net, self.depth_scale, self.flip = net, depth_scale, flip

    def call(self, x):
        return network_depth_m(lambda image: self.net(image, training=False), x, self.depth_scale, flip=self.flip)


def float32_copy(net: keras.Model) -> keras.Model:
    """net itself when every layer computes in float32; for a model trained with train.py --mixed-precision, the
    same architecture rebuilt from its config with each mixed DTypePolicy (mixed_float16, mixed_bfloat16) set to
    float32, holding net's weights (float32 variables under mixed precision too, so copied exactly).

    The export then holds no float16 or bfloat16 tensor: LiteRT's converter cannot lower the bfloat16 casts, and
    ONNX Runtime refuses tf2onnx's tensor(bfloat16) inputs.
    """
    config = net.get_config()
    if not _set_float32_policies(config):
        return net
    copy = keras.Model.from_config(config)
    copy.set_weights(net.get_weights())
    return copy


def _set_float32_policies(config) -> int:
    """Replace, in place, every mixed DTypePolicy in a Keras config (nested dicts and lists) by float32; returns
    how many there were."""
    if isinstance(config, list):
        return sum(_set_float32_policies(item) for item in config)
    if not isinstance(config, dict):
        return 0
    if config.get("class_name") == "DTypePolicy" and config["config"].get("name", "").startswith("mixed_"):
        config["config"]["name"] = "float32"
        return 1
    return sum(_set_float32_policies(value) for value in config.values())


def input_signature(net: keras.Model) -> list[tf.TensorSpec]:
    """The exported graphs' one input, "image": float32 [any batch, h, w, 3]."""
    return [tf.TensorSpec([None, *net.input_shape[1:]], tf.float32, name="image")]


# ---------------------------------------------------------------------------
# Writing each format
# ---------------------------------------------------------------------------

def write_saved_model(metres: MetresModel, path: Path, work: Path, quantize: str, calibration) -> None:
    """Keras's model.export: a SavedModel folder whose `serve` endpoint is the MetresModel."""
    metres.export(str(path), format="tf_saved_model", input_signature=input_signature(metres.net), verbose=False)


def _quantize_none(converter, calibration) -> None:
    """Float32 throughout."""


def _quantize_float16(converter, calibration) -> None:
    """Float16 weights (half the file); LiteRT dequantizes them to float32 on CPUs without float16 arithmetic."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _quantize_int8(converter, calibration: CalibrationImages) -> None:
    """Int8 weights and activations, ranges measured on the calibration images; float32 input and output, and
    float32 kernels for any op without an int8 one."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration


CONVERTER_SETTINGS = {"none": _quantize_none, "float16": _quantize_float16, "int8": _quantize_int8}


def write_tflite(metres: MetresModel, path: Path, work: Path, quantize: str, calibration) -> None:
    """TensorFlow's LiteRT converter, from the SavedModel write_saved_model makes in `work`."""
    saved = work / "savedmodel"
    write_saved_model(metres, saved, work, "none", None)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    CONVERTER_SETTINGS[quantize](converter, calibration)
    path.write_bytes(converter.convert())
    computes = tflite_quantization(path)
    if computes != quantize:  # e.g. LiteRT falls back to float32 when the representative dataset yields nothing
        raise ValueError(f"LiteRT's converter wrote a model computing in {QUANTIZATION_NAMES[computes]}, not the "
                         f"{QUANTIZATION_NAMES[quantize]} --quantize {quantize} asks for; nothing was written")


def write_onnx(metres: MetresModel, path: Path, work: Path, quantize: str, calibration) -> None:
    """tf2onnx from the SavedModel write_saved_model makes in `work`, as `python -m tf2onnx.convert --saved-model`.

    Not Keras's model.export(format="onnx"): its tf2onnx.convert.from_function turns the constants that
    keras.layers.Normalization captures (the transfer model's ImageNet preprocessing) into extra graph inputs,
    which the SavedModel path leaves out.
    """
    tf2onnx = import_runtime(path, "tf2onnx", "tf2onnx")
    saved = work / "savedmodel"
    write_saved_model(metres, saved, work, "none", None)
    graph_def, inputs, outputs = tf2onnx.tf_loader.from_saved_model(str(saved), None, None, tag="serve",
                                                                    signatures=["serving_default"])
    model_proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs,
                                                    custom_op_handlers={"Erfc": (erfc_as_one_minus_erf, ())})
    exact_resize_scales(model_proto)
    path.write_bytes(model_proto.SerializeToString())


def erfc_as_one_minus_erf(ctx, node, name, args) -> None:
    """tf2onnx's handler for TensorFlow's Erfc, which ONNX lacks and TensorFlow's exact GELU computes (KerasHub's
    DINOv2, 0.5 * x * erfc(-x / sqrt(2))): the node becomes ONNX's Erf and its consumers read 1 - Erf."""
    from tf2onnx import utils  # installed, as write_onnx has checked

    node.type = "Erf"
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.output[0]))
    one = ctx.make_const(utils.make_name("erfc_one"), np.ones((), dtype))
    ctx.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]])


def exact_resize_scales(model_proto) -> None:
    """Make every constant-scale ONNX Resize produce the size TensorFlow resized to, in place.

    tf2onnx writes a resize to a static size as float32 scales (size / input size), and ONNX's output size is
    floor(input * scale): the transfer model's 7x10 -> 15x20 at 240x320 (model.upproject_block) becomes
    floor(7 * float32(15 / 7)) = 14, and ONNX Runtime refuses the graph. Raising each scale other than 1 by one
    float32 step lands the floor on the intended size and moves the sampling positions by ~1e-7 of a pixel.
    """
    from onnx import numpy_helper  # installed with tf2onnx, which write_onnx has checked for

    constants = {tensor.name: tensor for tensor in model_proto.graph.initializer}
    scale_names = {node.input[2] for node in model_proto.graph.node
                   if node.op_type == "Resize" and len(node.input) > 2 and node.input[2] in constants}
    for name in scale_names:
        scales = numpy_helper.to_array(constants[name])
        raised = np.where(scales != 1, np.nextafter(scales, np.float32(np.inf)), scales).astype(np.float32)
        constants[name].CopyFrom(numpy_helper.from_array(raised, name))


WRITERS = {"savedmodel": write_saved_model, "tflite": write_tflite, "onnx": write_onnx}


def sample_images(input_hw, calibration: CalibrationImages | None) -> np.ndarray:
    """float32 RGB [N, h, w, 3] in [0, 1] every export is run on before it is moved into place: the first
    SAMPLE_IMAGES calibration images for int8 (real frames: its difference from the Keras model there is what a
    user sees), else a mid-grey image and a seeded uniform noise one."""
    if calibration is not None:
        return np.concatenate([batch for (batch,), _ in zip(calibration(), range(SAMPLE_IMAGES))])
    noise = np.random.default_rng(0).random([1, *input_hw, 3], dtype=np.float32)
    return np.concatenate([np.full([1, *input_hw, 3], 0.5, np.float32), noise])


def export_model(net: keras.Model, depth_scale: DepthScale, out, *, fmt: str, quantize: str = "none",
                 flip: bool = True, calibration=None, source: str = "") -> Path:
    """Write net as `fmt` (a key of WRITERS) to `out`, with its ExportInfo sidecar (carrying the training mean
    depth net's DepthOutput recorded, if any); returns out.

    calibration: for quantize "int8", the CalibrationImages (calibration_images) LiteRT's converter measures the
    ranges on; ValueError, and nothing written, when too few of them are readable, or when the written .tflite
    does not compute in what `quantize` says (tflite_quantization). ValueError before any work when out (or its sidecar) exists and is not an export
    of fmt export.py wrote (staging.check_replaceable): nothing else is ever replaced. The export is made in a
    staging folder beside out and moved into place with its sidecar (staging.publish), so a failed export leaves
    any earlier export at out as it was, and a killed one never a model beside another's sidecar; the staging
    folders killed exports left there are removed first (staging.remove_stale_staging).
    """
    out = Path(out)
    if quantize != "none" and fmt != "tflite":
        raise ValueError(f"--quantize {quantize} is for --format tflite; {fmt} exports float32")
    if quantize == "int8" and calibration is None:
        raise ValueError("int8 quantization needs calibration images")
    check_replaceable(out, fmt)
    if quantize == "int8":
        calibration.check_enough()  # seconds of reading, before minutes of converting
    net = float32_copy(net)
    metres = MetresModel(net, depth_scale, flip)
    metres(tf.zeros([1, *net.input_shape[1:]]))  # built, so model.export knows its variables
    info = ExportInfo(fmt, tuple(net.input_shape[1:3]), tuple(net.output_shape[1:3]), depth_scale.min_depth_m,
                      depth_scale.max_depth_m, flip, quantize, str(source), train_mean_depth_of(net))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out.parent)
    work = staging_folder(out.parent)
    try:
        staged = work / "export"
        WRITERS[fmt](metres, staged, work, quantize, calibration)
        images = sample_images(info.input_hw, calibration if quantize == "int8" else None)
        agreement = check_runs(staged, info, out, images, metres(images).numpy())
        info = dataclasses.replace(info, max_abs_diff_m=agreement.max_abs_diff_m,
                                   depth_step_m=output_step_m(staged) if quantize == "int8" else None)
        publish(staged, info_json(info), out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------
# Calibration images for int8
# ---------------------------------------------------------------------------

def training_split(*, model_path, data: str | None) -> Split:
    """The split int8 calibration draws from: the training split of `data` (a --data value: its 'train' split,
    else 'all'), else the training split of the first dataset the args.json beside model_path (train.py's run
    directory) names, read as train.py read it (its --train-split, --depth-units-per-metre, --tfds-data-dir).
    ValueError when neither is known; DataError when the data cannot be opened."""
    if data is not None:
        run = {"data": data}
    else:
        saved = Path(model_path).parent / "args.json"
        run = json.loads(saved.read_text()) if saved.is_file() else {}
        if "data" not in run:
            raise ValueError(f"int8 calibrates on training images, and {model_path} has no args.json beside it "
                             "naming its training data; pass --data")
    train, _ = open_mixtures(data_specs(run["data"]), train_split=run.get("train_split", "auto"), val_split="none",
                             depth_units_per_metre=run.get("depth_units_per_metre"),
                             tfds_data_dir=run.get("tfds_data_dir"))
    return train.splits[0]


class CalibrationImages:
    """LiteRT's representative dataset: called, a generator yielding [RGB float32 [1, h, w, 3] in [0, 1]] for
    `count` frames of split, evenly spaced, resized to input_hw as predict.py resizes. Unreadable frames are
    skipped (data.frames); `check_enough`, before a conversion, refuses ranges that would be measured on too few
    of them."""

    def __init__(self, split: Split, input_hw, count: int):
        self.frames = split.subset(evenly_spaced(len(split), count))
        self.input_hw = tuple(input_hw)

    def __call__(self):
        for frame in frames(self.frames):
            yield [resize_rgb(frame["rgb"][None], self.input_hw)]

    def check_enough(self) -> None:
        """Read the frames once (decoding, not resizing): ValueError naming the split, the count read and the
        first unreadable frame when fewer than MIN_CALIBRATION_SHARE of the frames asked for are readable (ranges
        from a few images clip the rest)."""
        asked = len(self.frames)
        needed = max(1, math.ceil(MIN_CALIBRATION_SHARE * asked))
        skipped = SkipLog()
        read = sum(1 for _ in frames(self.frames, skipped=skipped))
        if read < needed:
            unreadable = skipped.take()
            first = f"; the first unreadable: {unreadable[0]}" if unreadable else ""
            raise ValueError(f"int8 calibration read {read} of the {asked} training images it drew from "
                             f"{self.frames.source} [{self.frames.name}] and needs at least {needed}{first}; give "
                             "--data with readable training images (or --quantize float16, which needs none); "
                             "nothing was written")


def calibration_images(split: Split, input_hw, count: int) -> CalibrationImages:
    """The int8 calibration set: `count` frames of split, evenly spaced, at input_hw (CalibrationImages)."""
    return CalibrationImages(split, input_hw, count)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def default_out(model_path, fmt: str, quantize: str) -> Path:
    """Beside the model: model.tflite, model_int8.tflite, model.onnx, model_savedmodel/."""
    model_path = Path(model_path)
    stem = model_path.stem + ("" if quantize == "none" else f"_{quantize}")
    return model_path.with_name(stem + (OUT_SUFFIXES[fmt] or "_savedmodel"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the trained model to export (.keras, as train.py saves it)")
    parser.add_argument("--format", choices=FORMATS, required=True,
                        help="savedmodel (a folder), tflite (LiteRT) or onnx")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                        help="tflite only: float16 weights, or int8 weights and activations (default: none)")
    parser.add_argument("--no-flip", action="store_true",
                        help="leave the flip test-time average out of the graph (twice as fast, slightly less "
                             "accurate; predict.py then adds it unless given --no-flip)")
    parser.add_argument("--out", default=None,
                        help="where to write (default: beside --model, e.g. model.tflite, model_int8.tflite, "
                             "model.onnx, model_savedmodel/); <out>.json gets the description")
    parser.add_argument("--data", default=None,
                        help="int8: the dataset whose training images calibrate the ranges (default: the data the "
                             "args.json beside --model names)")
    parser.add_argument("--calibration-frames", type=int, default=CALIBRATION_FRAMES,
                        help=f"int8: training images, evenly spaced, that calibrate the ranges "
                             f"(default: {CALIBRATION_FRAMES})")
    args = parser.parse_args(argv)
    if args.calibration_frames < 1:
        parser.error(f"--calibration-frames must be at least 1, got {args.calibration_frames}")
    args.out = Path(args.out) if args.out else default_out(args.model, args.format, args.quantize)
    suffix = OUT_SUFFIXES[args.format]
    if args.out.suffix.lower() != suffix and (suffix or args.out.suffix.lower() in (".tflite", ".onnx", ".keras")):
        parser.error(f"--out for --format {args.format} must be " + (f"a {suffix} file" if suffix else "a folder")
                     + f" (predict.py tells formats apart by it), got {args.out}")
    return args


WRITE_FIX = "free space or choose another --out; nothing was written"  # for a full or read-only disk


def main(args: argparse.Namespace) -> int:
    """Run the command line; returns the exit code (2 with one sentence for a bad model, data or --out)."""
    try:
        net = load_model(args.model)
        depth_scale = depth_scale_of(net)
        calibration = None
        if args.quantize == "int8":
            split = training_split(model_path=args.model, data=args.data)
            calibration = calibration_images(split, net.input_shape[1:3], args.calibration_frames)
        out = export_model(net, depth_scale, args.out, fmt=args.format, quantize=args.quantize,
                           flip=not args.no_flip, calibration=calibration, source=args.model)
    except (FileNotFoundError, ValueError, DataError) as err:
        return user_error(f"{err}")
    except OSError as err:  # --out's folder is read-only or full
        return user_error(f"cannot write {err.filename or args.out} ({err.strerror}); {WRITE_FIX}")
    except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError) as err:  # the same in TensorFlow's
        return user_error(f"cannot write {args.out} ({first_line(err)}); {WRITE_FIX}")  # writers
    size = sum(p.stat().st_size for p in out.rglob("*")) if out.is_dir() else out.stat().st_size
    print(f"wrote {out} ({size / 2**20:.1f} MiB; {args.format}, quantize {args.quantize}, flip "
          f"{'inside' if not args.no_flip else 'not included'}) and {sidecar_path(out)}: float32 RGB in [0, 1] "
          f"{net.input_shape[1]}x{net.input_shape[2]} -> depth in metres {net.output_shape[1]}x{net.output_shape[2]}, "
          f"{depth_scale.min_depth_m:g}-{depth_scale.max_depth_m:g} m")
    info = read_info(out)
    steps = f", in steps of {info.depth_step_m:.3g} m (int8: 256 levels)" if info.depth_step_m else ""
    print(f"checked in {RUNTIMES[args.format]}: its depth differs from the Keras model's by at most "
          f"{info.max_abs_diff_m:.2g} m per pixel on {'calibration' if calibration else 'test'} images{steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
