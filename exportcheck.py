"""Checking an export export.py has written, before it is moved into place at --out.

Every export is loaded by the runtime predict.py will use (backends.EXPORTED_FORMATS) and run on sample images;
it must return finite depth of the sidecar's size, and its difference from the Keras model's depth in metres on
those images is measured (`Agreement`). A .tflite must compute in what --quantize says, read from its own tensors
(`tflite_quantization`), and an int8 one's depth comes in steps of its output's quantization scale
(`output_step_m`): the decoding to metres is quantized with the rest of the graph, so 256 levels span the
output's calibrated range (about 0.03-0.04 m for 0.1-10 m).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from backends import EXPORTED_FORMATS, ExportInfo, MissingRuntime, check_input_size, import_runtime

RUNTIMES = {"savedmodel": "TensorFlow", "tflite": "LiteRT", "onnx": "ONNX Runtime"}  # what backends runs each with
# what a .tflite computes in -> its description (the names --quantize gives them, and one it does not)
QUANTIZATION_NAMES = {"none": "float32", "float16": "float16 weights", "int8": "int8 weights and activations",
                      "int8 weights": "int8 weights and float32 activations"}


@dataclasses.dataclass(frozen=True)
class Agreement:
    """An export's depth against the Keras model's on `images` sample images: mean and largest per-pixel
    absolute difference in metres."""

    images: int
    mean_abs_diff_m: float
    max_abs_diff_m: float


def _litert_model(path: Path):
    """(LiteRT interpreter of path, {tensor index: its details}, the op list)."""
    litert = import_runtime(path, "ai_edge_litert.interpreter", "ai-edge-litert")
    interpreter = litert.Interpreter(model_path=str(path))
    tensors = {tensor["index"]: tensor for tensor in interpreter.get_tensor_details()}
    # _get_ops_details: the interpreter's op list (tf.lite.Interpreter's too since TF 2.5), there being no public one
    return interpreter, tensors, interpreter._get_ops_details()


def tflite_quantization(path: Path) -> str:
    """What the LiteRT model at path computes in, from its own tensors (a key of QUANTIZATION_NAMES): "int8" when
    a QUANTIZE op turns the float32 input into int8 activations, "int8 weights" for int8 tensors without one,
    "float16" for float16 (weight) tensors, else "none"."""
    _, tensors, ops = _litert_model(path)
    dtypes = {index: tensor["dtype"] for index, tensor in tensors.items()}
    if any(op["op_name"] == "QUANTIZE" and dtypes.get(index) == np.int8 for op in ops for index in op["outputs"]):
        return "int8"
    return "int8 weights" if np.int8 in dtypes.values() else "float16" if np.float16 in dtypes.values() else "none"


def output_step_m(path: Path) -> float | None:
    """The depth step in metres of an int8 LiteRT model: the quantization scale of the int8 tensor its float32
    output is dequantized from (None when the output is not dequantized from int8)."""
    interpreter, tensors, ops = _litert_model(path)
    output = interpreter.get_output_details()[0]["index"]
    for op in ops:
        if op["op_name"] == "DEQUANTIZE" and output in op["outputs"]:
            source = tensors[op["inputs"][0]]
            if source["dtype"] == np.int8:
                return float(source["quantization"][0])
    return None


def check_runs(path: Path, info: ExportInfo, out: Path, images: np.ndarray, reference: np.ndarray) -> Agreement:
    """Load the export written at path with its runtime and run it on images (float32 RGB [N, h, w, 3] in [0, 1]);
    reference: the Keras model's depth for them [N, h', w', 1] in metres. ValueError naming `out` unless it loads
    and returns finite depth of that shape, so export.py never reports a file that does not load as written."""
    runtime = RUNTIMES[info.format]
    try:
        run, input_shape = EXPORTED_FORMATS[info.format][1](path)
        check_input_size(path, info, input_shape)
        depth = np.asarray(run(images))
    except MissingRuntime:
        raise
    except Exception as err:  # each runtime raises its own types for a graph it cannot load or run
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"the {info.format} export for {out} does not run in {runtime} ({reason[:300]}); "
                         "nothing was written") from None
    if depth.shape != reference.shape or not np.isfinite(depth).all():
        raise ValueError(f"the {info.format} export for {out} does not return finite depth {list(reference.shape)} "
                         f"in {runtime} (got {depth.dtype} {list(depth.shape)}, "
                         f"{np.count_nonzero(~np.isfinite(depth))} not finite); nothing was written")
    difference = np.abs(depth.astype(np.float64) - reference)
    return Agreement(len(images), float(difference.mean()), float(difference.max()))
