"""Loading any depth model predict.py and evaluate.py accept: a .keras file, or one export.py wrote.

export.py writes a SavedModel folder, a LiteRT flat buffer (.tflite) or an ONNX file, each mapping float32 RGB
[B, h, w, 3] in [0, 1] at the model's input size straight to depth in metres [B, h', w', 1] (the DepthScale's
decoding, and optionally the flip average, inside the graph), with a sidecar `<file>.json` (`ExportInfo`)
recording the input size, depth range, units and the model's training mean depth. `load_depth_model(path)` picks
the loader by extension (a folder holding saved_model.pb is a SavedModel) and returns the model with its
DepthScale; an exported model is an `ExportedModel`, which predict.predict_depth_m runs like a Keras model's
forward pass. `recorded_mean_depth_m(model)` reads either kind's training mean depth back. A SavedModel is a
program: it is scanned for ops that touch files, print or run Python (opscan) before it runs, unless the
script's --trust-saved-model (`add_trust_argument`) says otherwise.
The runtimes of .tflite (`ai-edge-litert`) and .onnx (`onnxruntime`) are imported only when such a file is loaded.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from depth import DepthScale
from quiet import native_logging_silenced
from model import depth_scale_of, load_model, train_mean_depth_of
from opscan import TRUST_FLAG, refuse_denied_ops

UNITS = "metres"
INPUT_DESCRIPTION = "float32 RGB in [0, 1], [B, H, W, 3] at input_hw (resize first, as inference.resize_rgb does)"
SAVED_MODEL_FILE = "saved_model.pb"  # what makes a folder a SavedModel


class MissingRuntime(ValueError):
    """An exported file whose runtime package is not installed. A ValueError, so the scripts' one-sentence
    handlers report it like any other unusable --model."""

    def __init__(self, path, package: str):
        super().__init__(f"{path} needs the {package} package to run; install it: pip install {package}")


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What an exported file maps and how: the sidecar `<file>.json` export.py writes beside it.

    input_hw / output_hw: (height, width) in pixels of the network input and of the depth it returns;
    min_depth_m / max_depth_m: the range every output lies in; flip: the flip test-time average is inside
    the graph; quantize: none, float16 or int8; source: the .keras file it was exported from;
    train_mean_depth_m: the mean depth in metres of the model's training frames as train.py recorded it (None
    when the model recorded none, and in sidecars written before export.py carried it); max_abs_diff_m: the
    largest per-pixel difference in metres from the Keras model's depth on the images export.py checked the file
    on (exportcheck); depth_step_m: int8 only, the step between the depths it can return (its output's
    quantization scale). Both None in sidecars written before export.py measured them.
    """

    format: str
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    min_depth_m: float
    max_depth_m: float
    flip: bool
    quantize: str = "none"
    source: str = ""
    train_mean_depth_m: float | None = None
    max_abs_diff_m: float | None = None
    depth_step_m: float | None = None
    units: str = UNITS
    input: str = INPUT_DESCRIPTION

    @property
    def depth_scale(self) -> DepthScale:
        """The outputs are metres already: decoding them only clips to the range."""
        return DepthScale("metres", self.min_depth_m, self.max_depth_m)


def sidecar_path(path) -> Path:
    """The ExportInfo JSON of an exported file or folder: model.tflite -> model.tflite.json."""
    return Path(str(path).rstrip("/\\") + ".json")


def info_json(info: ExportInfo) -> str:
    """The sidecar's text: info as indented JSON."""
    return json.dumps(dataclasses.asdict(info), indent=2) + "\n"


def read_info(path) -> ExportInfo:
    """The ExportInfo of an exported file; ValueError naming the sidecar when it is missing or not one."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise ValueError(f"{path} has no {sidecar.name} beside it (export.py writes one, recording the input size "
                         "and depth range); export the model again with export.py")
    try:
        fields = json.loads(sidecar.read_text())
        info = ExportInfo(**fields)
        problem = _invalid_field(info)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError, AttributeError) as err:
        problem = str(err)
    if problem:
        raise ValueError(f"{sidecar} is not an export description written by export.py ({problem}); export the "
                         "model again") from None
    return dataclasses.replace(info, input_hw=tuple(info.input_hw), output_hw=tuple(info.output_hw))


def _is_size(value) -> bool:
    """[height, width]: two positive integer pixel counts."""
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


def _invalid_field(info: ExportInfo) -> str:
    """What is wrong with a sidecar's fields (one phrase), or "" when each is of its kind."""
    for name in ("input_hw", "output_hw"):
        if not _is_size(getattr(info, name)):
            return f"{name} must be [height, width] in pixels, got {getattr(info, name)!r}"
    depths = (info.min_depth_m, info.max_depth_m)
    if not all(isinstance(d, (int, float)) and not isinstance(d, bool) for d in depths) or not 0 < depths[0] < depths[1]:
        return f"min_depth_m and max_depth_m must be numbers with 0 < min < max, got {depths[0]!r} and {depths[1]!r}"
    if info.format not in EXPORTED_FORMATS or info.quantize not in ("none", "float16", "int8"):
        return f"unknown format {info.format!r} or quantize {info.quantize!r}"
    if not isinstance(info.flip, bool):
        return f"flip must be true or false, got {info.flip!r}"
    return ""


def check_input_size(path, info: ExportInfo, input_shape) -> None:
    """ValueError unless the exported file's own input shape [B, h, w, 3] (None for a dynamic size) agrees with
    its sidecar's input_hw: a pair from two exports (a copied file, an edited sidecar) would otherwise fail deep
    inside its runtime."""
    shape = list(input_shape)
    agrees = (len(shape) == 4 and shape[3] in (None, 3)
              and all(d is None or d == s for d, s in zip(shape[1:3], info.input_hw)))
    if not agrees:
        file_shape = "x".join("?" if d is None else str(d) for d in shape)
        raise ValueError(f"{sidecar_path(path)} describes an input of {info.input_hw[0]}x{info.input_hw[1]} RGB, but "
                         f"{path} itself takes {file_shape}: the two are from different exports; export the model "
                         "again with export.py")


class ExportedModel:
    """An exported depth model behind one call: float32 RGB [B, h, w, 3] in [0, 1] -> depth float32
    [B, h', w', 1] in metres, (h, w) = info.input_hw, (h', w') = info.output_hw.

    `input_shape` and `depth_scale` mirror a Keras model's (the scale is metres: decoding only clips), and
    `flips_inside` tells predict_depth_m not to add its own flip pass.
    """

    def __init__(self, path, info: ExportInfo, run):
        self.path, self.info, self._run = str(path), info, run
        self.input_shape = (None, *info.input_hw, 3)
        self.depth_scale = info.depth_scale
        self.flips_inside = info.flip

    def __call__(self, x) -> np.ndarray:
        return np.asarray(self._run(np.ascontiguousarray(x, np.float32)))

    def __repr__(self) -> str:
        return f"ExportedModel({self.path!r}, {self.info.format}, quantize={self.info.quantize})"


def import_runtime(path, module: str, package: str):
    """importlib.import_module(module), or MissingRuntime naming `package` for `path` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingRuntime(path, package) from None


def _dimensions(shape) -> list:
    """A runtime's input shape as ints, None for a dynamic dimension (LiteRT's -1, ONNX's names)."""
    return [int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape]


def _run_saved_model(path):
    """(run, input shape): the SavedModel's `serve` endpoint (model.export's) as numpy in, numpy out."""
    try:
        loaded = tf.saved_model.load(str(path))  # held by the closure: serve's variables live as long as it
    except Exception as err:  # TensorFlow raises many types for a damaged folder
        raise ValueError(f"{path} is not a readable SavedModel ({type(err).__name__}); export it again") from None
    signature = getattr(getattr(loaded, "serve", None), "input_signature", None)
    if not signature:
        raise ValueError(f"{path} has no `serve` function taking one image batch (export.py's SavedModels do); "
                         "export the model with export.py")
    return (lambda x: loaded.serve(tf.constant(x)).numpy()), _dimensions(signature[0].shape.as_list())


def _run_litert(path):
    """(run, input shape): a LiteRT interpreter on all cores, its input resized whenever the batch size changes."""
    litert = import_runtime(path, "ai_edge_litert.interpreter", "ai-edge-litert")
    try:
        interpreter = litert.Interpreter(model_path=str(path), num_threads=os.cpu_count())
    except ValueError as err:  # LiteRT's one error for a file that is not a flat buffer model
        raise ValueError(f"{path} is not a LiteRT (.tflite) model ({str(err).splitlines()[0]})") from None
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    shape = [None]

    def run(x):
        if shape[0] != x.shape:
            interpreter.resize_tensor_input(source["index"], x.shape, strict=True)
            with native_logging_silenced():  # LiteRT announces its XNNPACK delegate on stderr as it applies it
                interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run, _dimensions(source["shape_signature"])


def _run_onnx(path):
    """(run, input shape): an ONNX Runtime session on the CPU."""
    ort = import_runtime(path, "onnxruntime", "onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ... for a file that is not a model
        raise ValueError(f"{path} is not an ONNX model ({str(err).splitlines()[0]})") from None
    source = session.get_inputs()[0]
    return (lambda x: session.run(None, {source.name: x})[0]), _dimensions(source.shape)


# format -> (how its file is recognised, the loader of such a file: path -> (run, the file's input shape [B, h, w, C])).
# Keras's own files go to model.load_model.
EXPORTED_FORMATS = {
    "savedmodel": ("a folder holding saved_model.pb", _run_saved_model),
    "tflite": (".tflite", _run_litert),
    "onnx": (".onnx", _run_onnx),
}
KERAS_SUFFIXES = (".keras", ".h5")
MODEL_KINDS_TEXT = "a .keras file, a SavedModel folder, a .tflite or an .onnx file (export.py writes the last three)"


def model_format(path) -> str:
    """"keras" or a key of EXPORTED_FORMATS for an existing `path`, by its extension (a folder: SavedModel).

    Raises FileNotFoundError for nothing at path and ValueError for anything else.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / SAVED_MODEL_FILE).is_file():
            raise ValueError(f"{path} is a folder without {SAVED_MODEL_FILE}, so not a SavedModel; "
                             f"give {MODEL_KINDS_TEXT}")
        return "savedmodel"
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    suffix = path.suffix.lower()
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix in (".tflite", ".onnx"):
        return suffix[1:]
    raise ValueError(f"{path}: unknown model format {suffix or '(no extension)'!r}; give {MODEL_KINDS_TEXT}")


def load_exported(path, *, trust_saved_model: bool = False) -> ExportedModel:
    """An exported file (EXPORTED_FORMATS) with its sidecar; ValueError (MissingRuntime for a runtime that is
    not installed) naming the file for anything unusable. A SavedModel is first scanned for ops that touch
    files, print or run Python (opscan.DENIED_OPS; UntrustedSavedModel) unless trust_saved_model."""
    kind = model_format(path)
    if kind not in EXPORTED_FORMATS:
        raise ValueError(f"{path} is a Keras model, not an exported one; load it with model.load_model")
    if kind == "savedmodel" and not trust_saved_model:
        refuse_denied_ops(path)
    run, input_shape = EXPORTED_FORMATS[kind][1](path)  # first: a file not of its format says so, not its sidecar
    info = read_info(path)
    check_input_size(path, info, input_shape)
    return ExportedModel(path, info, run)


def load_depth_model(path, *, trust_saved_model: bool = False):
    """(model, its DepthScale) for any --model: a Keras model from model.load_model (Keras's safe mode: no
    Lambda layers), or an ExportedModel (a SavedModel scanned first unless trust_saved_model: load_exported).

    Raises FileNotFoundError or ValueError with one sentence naming the file and the fix.
    """
    if model_format(path) == "keras":
        net = load_model(path)
        return net, depth_scale_of(net)
    exported = load_exported(path, trust_saved_model=trust_saved_model)
    return exported, exported.depth_scale


def add_trust_argument(parser) -> None:
    """The scripts' flag that runs a SavedModel --model whose graph holds opscan.DENIED_OPS."""
    parser.add_argument(TRUST_FLAG, action="store_true",
                        help="run a SavedModel --model even if its graph can write or read files, print or run "
                             "Python (refused by default, as saved_model_cli scan flags them): for files you trust")


def recorded_mean_depth_m(model) -> float | None:
    """The mean training depth in metres recorded with a model load_depth_model returned: a Keras model's
    DepthOutput config (model.train_mean_depth_of) or an export's sidecar; None when it recorded none."""
    if isinstance(model, ExportedModel):
        return model.info.train_mean_depth_m
    return train_mean_depth_of(model)
