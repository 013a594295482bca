"""NYU Depth V2 in its common layouts, a synthetic NYU-format dataset, and the tf.data input pipeline.

Depth is in metres everywhere outside the network. The network sees depth through one
`DepthScale`: DenseDepth's inverse depth (max_depth_m / depth) by default, or plain metres.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import logging
import multiprocessing
import sys
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import tensorflow as tf
from PIL import Image
from tqdm import tqdm

import synth
from camera import NYU_FRAME_HW

LOG = logging.getLogger("depth.data")

INPUT_HW = (240, 320)  # the seed's input resolution (height, width)


@dataclasses.dataclass(frozen=True)
class DepthScale:
    """How depth in metres maps to the values the network predicts.

    mode "inverse": y = max_depth_m / clip(depth, min, max), so y is in [1, max/min]
    (DenseDepth's DepthNorm, [1, 100] for 0.1-10 m). mode "metres": y = clip(depth, min, max).
    """

    mode: str = "inverse"
    min_depth_m: float = 0.1
    max_depth_m: float = 10.0

    def __post_init__(self):
        if self.mode not in _SCALE_MODES:
            raise ValueError(f"depth mode {self.mode!r} is not one of {sorted(_SCALE_MODES)}")
        if not 0 < self.min_depth_m < self.max_depth_m:
            raise ValueError(
                f"depth range must satisfy 0 < min < max, got min {self.min_depth_m} m, max {self.max_depth_m} m"
            )

    def encode(self, depth_m):
        """Depth in metres (any shape) -> network target, same shape, float32."""
        depth_m = tf.clip_by_value(tf.cast(depth_m, tf.float32), self.min_depth_m, self.max_depth_m)
        return _SCALE_MODES[self.mode][0](depth_m, self.max_depth_m)

    def decode(self, y):
        """Network output (any shape) -> depth in metres, clipped to [min_depth_m, max_depth_m]."""
        lo, hi = self.value_range
        y = tf.clip_by_value(tf.cast(y, tf.float32), lo, hi)
        return tf.clip_by_value(_SCALE_MODES[self.mode][1](y, self.max_depth_m), self.min_depth_m, self.max_depth_m)

    @property
    def value_range(self) -> tuple[float, float]:
        """(lowest, highest) encoded value; the highest is SSIM's max_val (DenseDepth: 1000/10)."""
        ends = sorted(_SCALE_MODES[self.mode][0](d, self.max_depth_m) for d in (self.min_depth_m, self.max_depth_m))
        return float(ends[0]), float(ends[1])

    def to_config(self) -> dict:
        return dataclasses.asdict(self)


# mode -> (encode(depth_m, max_m), decode(y, max_m)); each pair is exact inverses on [min, max].
_SCALE_MODES = {
    "inverse": (lambda d, max_m: max_m / d, lambda y, max_m: max_m / y),
    "metres": (lambda d, max_m: d, lambda y, max_m: y),
}


def pack_target(target, mask):
    """Stack the encoded depth [..., h, w, 1] and its validity mask [..., h, w, 1] into y_true [..., h, w, 2].

    Keras hands the loss one y_true tensor, so the mask travels as its second channel.
    """
    return tf.concat([tf.cast(target, tf.float32), tf.cast(mask, tf.float32)], axis=-1)


def unpack_target(y_true):
    """y_true [..., h, w, 2] -> (encoded depth [..., h, w, 1], mask [..., h, w, 1] of 0.0/1.0)."""
    return y_true[..., :1], y_true[..., 1:2]


# ---------------------------------------------------------------------------
# Sources: where frames come from, each read as two encoded blobs per frame
# ---------------------------------------------------------------------------

class DataError(Exception):
    """A user-facing problem with a dataset path or file; its message is one sentence naming the file and the fix."""


# depth_format -> how the depth blob is stored; decoded in the graph by `_DEPTH_DECODERS`.
DEPTH_FORMATS = {
    "png8_10m": "8-bit PNG, 255 = 10 m (DenseDepth's training depth)",
    "png16_mm": "16-bit PNG in millimetres",
    "raw_f32_m": "raw float32 in metres",
}
RGB_FORMATS = {"image": "JPEG or PNG file bytes", "raw": "raw uint8 H x W x 3"}


@dataclasses.dataclass
class Split:
    """One split of a dataset: a list of frame keys and a reader that turns a key into its blobs.

    reader(key) -> (rgb_bytes, depth_bytes, (h, w)); (h, w) is the raw arrays' shape for raw formats.
    crop is (top, bottom, left, right) in pixels of the full frame when the data ships one (Eigen's).
    """

    source: str
    layout: str
    name: str
    keys: list
    reader: object
    rgb_format: str
    depth_format: str
    crop: tuple | None = None
    skipped: list = dataclasses.field(default_factory=list)

    def __len__(self):
        return len(self.keys)

    def frame_name(self, index: int) -> str:
        key = self.keys[index]
        return key[0] if isinstance(key, tuple) else f"{self.name}_{int(key):05d}"

    def describe(self, index: int) -> str:
        """Where frame `index` lives, for warnings: the file (and member or row) a user can go and look at."""
        key = self.keys[index]
        where = " + ".join(key) if isinstance(key, tuple) else f"frame {int(key)}"
        return f"{self.source}: {where}"

    def take_skipped(self) -> list[str]:
        """The frames skipped since the last call (names with the reason), and forget them."""
        taken, self.skipped[:] = list(self.skipped), []
        return taken


@dataclasses.dataclass
class Source:
    """A dataset on disk: its layout name and its splits by name (train / test / all)."""

    path: str
    layout: str
    splits: dict

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DataError(
                f"{self.path} ({self.layout}) has no '{name}' split; it has: {', '.join(self.splits) or 'none'}"
            )
        return self.splits[name]


class _LocalHandles(threading.local):
    """One open handle per thread, so parallel tf.data readers never share a file position."""

    def __init__(self, opener):
        self.opener, self.handle = opener, None

    def get(self):
        if self.handle is None:
            self.handle = self.opener()
        return self.handle


def _folder_bytes(root: Path):
    return lambda ref: (root / ref).read_bytes()


def _zip_bytes(zip_path: Path):
    handles = _LocalHandles(lambda: zipfile.ZipFile(zip_path))
    return lambda ref: handles.get().read(ref)


class PairReader:
    """Frames stored as an RGB file and a depth file (PNG or .npy), fetched by `read_bytes(ref)`."""

    def __init__(self, read_bytes):
        self.read_bytes = read_bytes

    def __call__(self, key):
        rgb_ref, depth_ref = key
        rgb, depth = self.read_bytes(rgb_ref), self.read_bytes(depth_ref)
        if depth_ref.endswith(".npy"):
            array = np.load(io.BytesIO(depth), allow_pickle=False)
            if array.ndim == 3 and array.shape[-1] == 1:
                array = array[..., 0]
            if array.ndim != 2:
                raise ValueError(f"depth array has shape {array.shape}, expected (height, width) in metres")
            return rgb, np.ascontiguousarray(array, np.float32).tobytes(), array.shape
        return rgb, depth, (0, 0)


class NpyFramesReader:
    """Frame i of the stacked arrays in DenseDepth's eigen_test_rgb.npy / eigen_test_depth.npy.

    Reads one frame by seeking inside the .npy (inside the zip, if it is zipped), never the whole file.
    """

    def __init__(self, open_member, rgb_name: str, depth_name: str):
        self.rgb = _NpyStack(open_member, rgb_name)
        self.depth = _NpyStack(open_member, depth_name)
        if self.rgb.shape[:3] != self.depth.shape[:3] or self.rgb.shape[3:] != (3,):
            raise DataError(
                f"{rgb_name} {self.rgb.shape} and {depth_name} {self.depth.shape} do not match: "
                "expected N x H x W x 3 uint8 and N x H x W metres"
            )

    def __len__(self):
        return self.rgb.shape[0]

    def __call__(self, index):
        depth = self.depth.frame(index).astype(np.float32)
        return self.rgb.frame(index).astype(np.uint8).tobytes(), depth.tobytes(), depth.shape[:2]


_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class _NpyStack:
    """Random access to frames of an N x ... .npy file through a seekable file object."""

    def __init__(self, open_member, name: str):
        self.open_member, self.name = open_member, name
        with open_member(name) as f:
            read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(f))
            if read_header is None:
                raise DataError(f"{name} is a .npy of an unsupported format version; re-save it with numpy.save")
            self.shape, fortran, self.dtype = read_header(f)
            self.offset = f.tell()
        if fortran or len(self.shape) < 3:
            raise DataError(f"{name} holds a {self.shape} array; expected C-ordered N x H x W[ x 3] frames")
        self.frame_shape = self.shape[1:]
        self.frame_bytes = int(np.prod(self.frame_shape)) * self.dtype.itemsize
        self.handles = _LocalHandles(lambda: open_member(name))

    def frame(self, index: int) -> np.ndarray:
        f = self.handles.get()
        f.seek(self.offset + int(index) * self.frame_bytes)
        return np.frombuffer(f.read(self.frame_bytes), self.dtype).reshape(self.frame_shape)


class LabeledMatReader:
    """Frame i of nyu_depth_v2_labeled.mat (MATLAB v7.3 = HDF5).

    MATLAB stores images as 480x640x3xN and depths as 480x640xN column-major, so h5py sees
    images [N, 3, 640, 480] and depths [N, 640, 480] (metres); each frame is transposed back.
    """

    def __init__(self, mat_path: Path):
        self.handles = _LocalHandles(lambda: h5py.File(mat_path, "r"))

    def __call__(self, index):
        f = self.handles.get()
        rgb = np.ascontiguousarray(np.transpose(f["images"][int(index)], (2, 1, 0)), np.uint8)
        depth = np.ascontiguousarray(f["depths"][int(index)].T, np.float32)
        return rgb.tobytes(), depth.tobytes(), depth.shape


class _Archive:
    """A zip file or a folder, read alike: entries are '/'-separated paths relative to its root."""

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = path.is_file() and zipfile.is_zipfile(path)
        self.names = zipfile.ZipFile(path).namelist() if self.is_zip else None

    def find(self, basename: str) -> str | None:
        """The entry named `basename` at the root or one folder down (DenseDepth's zips nest under data/)."""
        if self.is_zip:
            return next((n for n in self.names if n == basename or n.endswith("/" + basename)), None)
        if self.path.is_dir():
            hits = [p for p in (self.path / basename, *self.path.glob(f"*/{basename}")) if p.is_file()]
            return hits[0].relative_to(self.path).as_posix() if hits else None
        return None

    def read_text(self, name: str) -> str:
        return self.bytes_reader()(name).decode("utf-8")

    def bytes_reader(self):
        return _zip_bytes(self.path) if self.is_zip else _folder_bytes(self.path)

    def opener(self):
        """name -> a fresh seekable binary file object for that entry."""
        if self.is_zip:
            return lambda name: zipfile.ZipFile(self.path).open(name)
        return lambda name: open(self.path / name, "rb")


def _csv_pairs(text: str) -> list[tuple[str, str]]:
    rows = [line.strip().split(",") for line in text.splitlines() if line.strip()]
    return [(row[0].strip(), row[1].strip()) for row in rows]


def _open_densedepth(path: Path) -> Source:
    """DenseDepth's nyu_data.zip, or its extracted folder: data/nyu2_{train,test}.csv of rgb,depth paths."""
    archive = _Archive(path)
    formats = {"train": "png8_10m", "test": "png16_mm"}
    splits = {}
    for name, depth_format in formats.items():
        csv_name = archive.find(f"nyu2_{name}.csv")
        if csv_name is None:
            continue
        keys = _csv_pairs(archive.read_text(csv_name))
        read_bytes = archive.bytes_reader()
        if not archive.is_zip and keys and not (path / keys[0][0]).exists() and (path.parent / keys[0][0]).exists():
            read_bytes = _folder_bytes(path.parent)  # the user pointed at the extracted data/ folder itself
        splits[name] = Split(str(path), "densedepth", name, keys, PairReader(read_bytes), "image", depth_format)
    return Source(str(path), "densedepth", splits)


def _open_eigen_npy(path: Path) -> Source:
    """DenseDepth's nyu_test.zip (or its folder): eigen_test_{rgb,depth,crop}.npy, depth in metres."""
    archive = _Archive(path)
    rgb, depth, crop = (archive.find(f"eigen_test_{part}.npy") for part in ("rgb", "depth", "crop"))
    if rgb is None or depth is None:
        raise DataError(f"{path} lacks eigen_test_rgb.npy or eigen_test_depth.npy, which nyu_test.zip holds")
    reader = NpyFramesReader(archive.opener(), rgb, depth)
    crop_box = None
    if crop is not None:
        with archive.opener()(crop) as f:
            crop_box = tuple(int(v) for v in np.load(f).ravel()[:4])
    split = Split(str(path), "eigen-npy", "test", list(range(len(reader))), reader, "raw", "raw_f32_m", crop_box)
    return Source(str(path), "eigen-npy", {"test": split})


def _open_labeled_mat(path: Path) -> Source:
    """nyu_depth_v2_labeled.mat (HDF5), split by splits.mat beside it (Eigen's 795 train / 654 test) if present."""
    mat = path if path.is_file() else path / "nyu_depth_v2_labeled.mat"
    if not h5py.is_hdf5(mat):
        raise DataError(f"{mat} is not a MATLAB v7.3 (HDF5) file; expected the official nyu_depth_v2_labeled.mat")
    with h5py.File(mat, "r") as f:
        if "images" not in f or "depths" not in f:
            raise DataError(f"{mat} has no 'images' and 'depths' datasets; expected nyu_depth_v2_labeled.mat")
        count = f["images"].shape[0]
    reader = LabeledMatReader(mat)
    splits_mat = mat.parent / "splits.mat"
    if splits_mat.exists():
        ndx = scipy.io.loadmat(splits_mat)
        parts = {"train": ndx["trainNdxs"], "test": ndx["testNdxs"]}  # MATLAB's 1-based frame numbers
        keys = {name: [int(i) - 1 for i in v.ravel()] for name, v in parts.items()}
    else:
        keys = {"all": list(range(count))}
    splits = {
        name: Split(str(mat), "labeled-mat", name, k, reader, "raw", "raw_f32_m") for name, k in keys.items()
    }
    return Source(str(mat), "labeled-mat", splits)


_BTS_LISTS = {  # split -> (images folder, file-list names: the short ones, then BTS's own)
    "train": ("sync", ("nyu_train.txt", "nyu_depth_v2_train_files_with_gt.txt")),
    "test": ("official_splits/test", ("nyu_test.txt", "nyu_depth_v2_test_files_with_gt.txt")),
}


def _open_bts(path: Path) -> Source:
    """BTS / AdaBins layout: sync/<scene>/rgb_X.jpg + sync_depth_X.png (mm) and official_splits/test/<scene>/."""
    splits = {}
    for name, (folder, list_names) in _BTS_LISTS.items():
        root = path / folder
        if not root.is_dir():
            continue
        list_file = next((path / n for n in list_names if (path / n).is_file()), None)
        if list_file is not None:
            rows = [line.split() for line in list_file.read_text().splitlines() if line.strip()]
            keys = [(r[0].lstrip("/"), r[1].lstrip("/")) for r in rows if len(r) >= 2 and r[1] != "None"]
        else:
            rgbs = sorted(p.relative_to(root).as_posix() for p in root.glob("*/rgb_*.jpg"))
            keys = [(r, r.replace("rgb_", "sync_depth_").rsplit(".", 1)[0] + ".png") for r in rgbs]
        splits[name] = Split(str(root), "bts", name, keys, PairReader(_folder_bytes(root)), "image", "png16_mm")
    return Source(str(path), "bts", splits)


def _pairs_in(folder: Path) -> list[tuple[str, str]]:
    """(rgb, depth) paths relative to `folder` for every X_rgb.{jpg,jpeg,png} with an X_depth.{png,npy} beside it."""
    pairs, orphans = [], []
    for rgb in sorted(p for p in folder.rglob("*_rgb.*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        stem = rgb.name[: -len("_rgb" + rgb.suffix)]
        depth = next((d for d in (rgb.with_name(f"{stem}_depth.png"), rgb.with_name(f"{stem}_depth.npy")) if d.exists()), None)
        if depth is None:
            orphans.append(rgb)
        else:
            pairs.append((rgb.relative_to(folder).as_posix(), depth.relative_to(folder).as_posix()))
    if orphans:
        LOG.warning("%d RGB files in %s have no X_depth.png or X_depth.npy beside them and are left out (first: %s)",
                    len(orphans), folder, orphans[0])
    return pairs


def _open_pairs(path: Path) -> Source:
    """A folder of X_rgb.* / X_depth.png (16-bit mm) or X_depth.npy (metres) pairs; train/ and test/ become splits."""
    folders = {name: path / name for name in ("train", "test") if (path / name).is_dir()} or {"all": path}
    splits = {}
    for name, folder in folders.items():
        keys = _pairs_in(folder)
        kinds = {Path(d).suffix for _, d in keys}
        if len(kinds) > 1:
            raise DataError(f"{folder} mixes X_depth.png and X_depth.npy files; keep one kind per folder")
        depth_format = "raw_f32_m" if kinds == {".npy"} else "png16_mm"
        splits[name] = Split(str(folder), "pairs", name, keys, PairReader(_folder_bytes(folder)), "image", depth_format)
    return Source(str(path), "pairs", splits)


def _open_bundle(path: Path) -> Source:
    """A folder holding DenseDepth's two zips: train from nyu_data.zip, test from nyu_test.zip (the Eigen arrays)."""
    splits = {}
    if (path / "nyu_data.zip").is_file():
        splits.update(_open_densedepth(path / "nyu_data.zip").splits)
    if (path / "nyu_test.zip").is_file():
        splits.update(_open_eigen_npy(path / "nyu_test.zip").splits)
    return Source(str(path), "densedepth-bundle", splits)


def _looks_like(path: Path) -> str | None:
    """The layout `path` is in, judged from names only (no frame is read)."""
    if path.is_dir() and ((path / "nyu_data.zip").is_file() or (path / "nyu_test.zip").is_file()):
        return "bundle"
    if path.suffix.lower() == ".mat" or (path / "nyu_depth_v2_labeled.mat").is_file():
        return "labeled-mat"
    if path.is_dir() and any((path / folder).is_dir() for folder, _ in _BTS_LISTS.values()):
        return "bts"
    archive = _Archive(path)
    if archive.is_zip or path.is_dir():
        if archive.find("nyu2_train.csv") or archive.find("nyu2_test.csv"):
            return "densedepth"
        if archive.find("eigen_test_rgb.npy"):
            return "eigen-npy"
    if path.is_dir() and next(path.rglob("*_rgb.*"), None) is not None:
        return "pairs"
    return None


_OPENERS = {
    "bundle": _open_bundle,
    "labeled-mat": _open_labeled_mat,
    "bts": _open_bts,
    "densedepth": _open_densedepth,
    "eigen-npy": _open_eigen_npy,
    "pairs": _open_pairs,
}

EXPECTED_LAYOUTS = (
    "DenseDepth's nyu_data.zip or its extracted folder (data/nyu2_train.csv), nyu_test.zip (eigen_test_*.npy), "
    "nyu_depth_v2_labeled.mat, a BTS folder (sync/ or official_splits/test/), "
    "or a folder of X_rgb.jpg/png + X_depth.png (mm) or X_depth.npy (m) pairs"
)


def open_source(path) -> Source:
    """Detect the layout of `path` and list its splits; a path in no known layout raises DataError."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a dataset path, e.g. data/synth (make it with: python data.py synth --out data/synth)")
    layout = _looks_like(path)
    if layout is None:
        raise DataError(f"{path} is not a dataset this project reads; expected {EXPECTED_LAYOUTS}")
    source = _OPENERS[layout](path)
    if not any(len(s) for s in source.splits.values()):
        raise DataError(f"{path} looks like {layout} but holds no frames")
    return source


# ---------------------------------------------------------------------------
# Reading and decoding frames
# ---------------------------------------------------------------------------

def _png_bit_depth(blob: bytes) -> int:
    return blob[24]  # IHDR: 8-byte signature, 4 length, 4 "IHDR", 4 width, 4 height, then bit depth


def _image_problem(blob: bytes) -> str | None:
    """Why `blob` is not a whole PNG or JPEG file (empty, truncated, another format), or None if it looks whole."""
    if blob.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in blob[-12:] else "truncated PNG (no IEND chunk at the end)"
    if blob.startswith(b"\xff\xd8"):
        return None if b"\xff\xd9" in blob[-1024:] else "truncated JPEG (no end-of-image marker)"
    return "neither a PNG nor a JPEG" if blob else "empty file"


_DEPTH_PNG_BITS = {"png8_10m": 8, "png16_mm": 16}


def _frame_problem(split: Split, rgb: bytes, depth: bytes, hw) -> str | None:
    """Why a frame's blobs cannot be decoded as `split` says they are stored, or None."""
    if split.rgb_format == "image" and (problem := _image_problem(rgb)):
        return f"RGB: {problem}"
    if split.rgb_format == "raw" and len(rgb) != hw[0] * hw[1] * 3:
        return f"RGB: {len(rgb)} bytes for a {hw[0]}x{hw[1]}x3 frame"
    bits = _DEPTH_PNG_BITS.get(split.depth_format)
    if bits is not None:
        if problem := _image_problem(depth):
            return f"depth: {problem}"
        if not depth.startswith(b"\x89PNG") or _png_bit_depth(depth) != bits:
            return f"depth: expected a {DEPTH_FORMATS[split.depth_format]}"
    elif len(depth) != hw[0] * hw[1] * 4:
        return f"depth: {len(depth)} bytes for a {hw[0]}x{hw[1]} float32 frame"
    return None


# Frames read per Python call: every tf.numpy_function call costs about 1 ms of GIL hand-offs whatever it does
# (reading a frame's bytes takes 0.04 ms), which capped the whole pipeline at ~850 frames/s on 2 cores when it
# read one frame per call; 8 per call lifts the reading stage to ~3500 frames/s (benchmark.py profiles it).
READ_CHUNK = 8


def _reader(split: Split, strict: bool):
    """indices int64 [n] -> (ok bool [n], rgb blobs string [n], depth blobs string [n], raw (h, w) int32 [n, 2])
    for tf.numpy_function; bad frames are logged, listed in split.skipped and come back with ok False.

    With strict=True a bad frame raises DataError naming it instead.
    """

    def read_one(index: int):
        try:
            rgb, depth, hw = split.reader(split.keys[index])
            problem = _frame_problem(split, rgb, depth, hw)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:  # missing, unreadable, bad .npy
            problem = f"{type(err).__name__}: {err}"
        if problem is None:
            return True, rgb, depth, np.asarray(hw, np.int32)
        where = split.describe(index)
        if strict:
            raise DataError(f"{where}: {problem} (drop --strict to skip such frames with a warning)")
        LOG.warning("skipping %s: %s", where, problem)
        split.skipped.append(f"{where}: {problem}")
        return False, b"", b"", np.zeros(2, np.int32)

    def read(indices):
        ok, rgb, depth, hw = zip(*(read_one(int(index)) for index in indices))
        return np.array(ok), np.array(rgb, object), np.array(depth, object), np.stack(hw)

    return read


def _decode_rgb(blob, hw, rgb_format, min_hw=None):
    """-> uint8 [H, W, 3]; JPEGs at a reduced scale when min_hw (h, w) is given (see _decode_jpeg_at_least)."""
    if rgb_format == "raw":
        return tf.reshape(tf.io.decode_raw(blob, tf.uint8), [hw[0], hw[1], 3])
    decode_any = lambda: tf.io.decode_image(blob, channels=3, dtype=tf.uint8, expand_animations=False)  # noqa: E731
    if min_hw is None:
        return decode_any()
    is_jpeg = tf.strings.substr(blob, 0, 2) == b"\xff\xd8"
    return tf.cond(is_jpeg, lambda: _decode_jpeg_at_least(blob, min_hw), decode_any)


_JPEG_RATIOS = (1, 2, 4, 8)  # the downscales libjpeg can apply while decoding


def _decode_jpeg_at_least(blob, min_hw):
    """JPEG bytes -> uint8 [ceil(H / r), ceil(W / r), 3] for the largest r in _JPEG_RATIOS that keeps both sides
    at least min_hw (h, w). libjpeg downscales inside the inverse DCT, so a 640x480 frame for a 320x240 input
    costs less than its full decode alone, and needs no resize after."""
    shape = tf.io.extract_jpeg_shape(blob)[:2]
    fits = [tf.reduce_all(shape // r >= tf.constant(min_hw, tf.int32)) for r in _JPEG_RATIOS]
    largest = tf.maximum(tf.reduce_sum(tf.cast(tf.stack(fits), tf.int32)) - 1, 0)  # fits is True..True False..False
    return tf.switch_case(largest, [lambda r=r: tf.io.decode_jpeg(blob, channels=3, ratio=r) for r in _JPEG_RATIOS])


def _finite_positive(depth):
    """Depth with every invalid value (NaN, inf, zero or negative) set to 0."""
    return tf.where(tf.math.is_finite(depth) & (depth > 0), depth, 0.0)


# depth_format -> (blob, raw hw) -> float32 [H, W, 1] metres, 0 = invalid. PNG values are never negative or
# non-finite, so only raw floats need _finite_positive.
_DEPTH_DECODERS = {
    "png8_10m": lambda b, hw: tf.cast(tf.io.decode_png(b, channels=1, dtype=tf.uint8), tf.float32) * (10.0 / 255.0),
    "png16_mm": lambda b, hw: tf.cast(tf.io.decode_png(b, channels=1, dtype=tf.uint16), tf.float32) / 1000.0,
    "raw_f32_m": lambda b, hw: _finite_positive(tf.reshape(tf.io.decode_raw(b, tf.float32), [hw[0], hw[1], 1])),
}


def blobs(split: Split, *, strict: bool = False, shuffle_seed: int | None = None,
          chunk: int = READ_CHUNK) -> tf.data.Dataset:
    """The reading stage of `frames`: dicts of the frame's undecoded rgb and depth blobs (string), raw hw
    (int32 [2]) and index (int64), bad frames already left out. Python reads `chunk` frames per call."""
    read = _reader(split, strict)
    indices = tf.data.Dataset.range(len(split))
    if shuffle_seed is not None:
        indices = indices.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)

    def load(chunk_indices):
        ok, rgb, depth, hw = tf.numpy_function(read, [chunk_indices], [tf.bool, tf.string, tf.string, tf.int32])
        return {"ok": tf.reshape(ok, [-1]), "rgb": tf.reshape(rgb, [-1]), "depth": tf.reshape(depth, [-1]),
                "hw": tf.reshape(hw, [-1, 2]), "index": chunk_indices}

    loaded = indices.batch(chunk).map(load, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    return loaded.filter(lambda frame: frame["ok"])


def frames(split: Split, *, strict: bool = False, shuffle_seed: int | None = None,
           rgb_min_hw=None) -> tf.data.Dataset:
    """Full-resolution frames of `split`: dicts of rgb uint8 [H, W, 3], depth float32 [H, W, 1] metres
    (0 = invalid) and index (int64, the frame's position in split.keys).

    Frames are read a few at a time (never the whole dataset); undecodable ones are skipped with a warning
    (listed in split.skipped) unless strict. shuffle_seed reshuffles the order every epoch. With rgb_min_hw
    (h, w), JPEG images come decoded at the smallest of 1, 1/2, 1/4, 1/8 scale still covering it.
    """
    def decode(frame):
        return {
            "rgb": _decode_rgb(frame["rgb"], frame["hw"], split.rgb_format, rgb_min_hw),
            "depth": _DEPTH_DECODERS[split.depth_format](frame["depth"], frame["hw"]),
            "index": frame["index"],
        }

    decoded = blobs(split, strict=strict, shuffle_seed=shuffle_seed).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    # A whole-looking file can still fail to decode (corrupt inside): TF logs it and the frame is dropped.
    return decoded if strict else decoded.ignore_errors(log_warning=True)


# ---------------------------------------------------------------------------
# Training / validation examples
# ---------------------------------------------------------------------------

def resize_depth(depth_m, size):
    """Depth [H, W, 1] metres (0 = invalid) -> (depth [h, w, 1], mask [h, w, 1] of 0/1) at `size` (h, w).

    An area average over valid pixels only, so holes never blend into their neighbours; an output pixel
    is valid when at least half of the input pixels under it were.
    """
    valid = tf.cast(depth_m > 0, tf.float32)
    weight = tf.image.resize(valid, size, method="area")
    total = tf.image.resize(depth_m * valid, size, method="area")
    mask = tf.cast(weight >= 0.5, tf.float32)
    return tf.math.divide_no_nan(total, weight) * mask, mask


def resize_rgb(rgb_uint8, size):
    """RGB uint8 [..., H, W, 3] -> float32 [..., h, w, 3] in [0, 1]: unchanged at the same size, an area average
    (a box filter, which never aliases) when shrinking both sides, else bilinear with antialiasing.

    Area is 4x cheaper than antialiased bilinear here and differs from it by under one grey level on average.
    """
    hw, size_t = tf.shape(rgb_uint8)[-3:-1], tf.constant(size, tf.int32)
    resized = tf.case([
        (tf.reduce_all(hw == size_t), lambda: tf.cast(rgb_uint8, tf.float32)),
        (tf.reduce_all(hw >= size_t), lambda: tf.image.resize(rgb_uint8, size, method="area")),
    ], default=lambda: tf.image.resize(rgb_uint8, size, method="bilinear", antialias=True))
    resized = tf.ensure_shape(resized, [*rgb_uint8.shape[:-3], *size, 3])  # the same-size branch knows no size
    return tf.clip_by_value(resized / 255.0, 0.0, 1.0)


def to_example(frame, input_hw, target_hw, depth_scale: DepthScale):
    """A decoded frame -> (rgb float32 [*input_hw, 3] in [0, 1], y_true [*target_hw, 2] = pack_target)."""
    depth, mask = resize_depth(frame["depth"], target_hw)
    target = tf.where(mask > 0, depth_scale.encode(depth), 0.0)
    return resize_rgb(frame["rgb"], input_hw), pack_target(target, mask)


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training-time augmentation (DenseDepth's flip and channel swap, plus mild photometric jitter).

    flip and channel_swap are probabilities; brightness is the largest added offset (images in [0, 1]),
    contrast and gamma the largest relative change (factor drawn from [1 - x, 1 + x]).
    """

    flip: float = 0.5
    channel_swap: float = 0.25
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: float = 0.1


_CHANNEL_ORDERS = list(itertools.permutations(range(3)))  # the 6 RGB orders (a list: no TF op at import)


def augment(rgb, y_true, seed, config: Augment):
    """Augment one example with the stateless seed `seed` (int64 [2]): flips apply to image and target
    together, colour changes to the image only. rgb [h, w, 3] in [0, 1], y_true [h', w', 2]."""
    s_flip, s_swap, s_order, s_bright, s_contrast, s_gamma = tf.unstack(tf.random.split(seed, 6))
    # tf.cond, not tf.where: the flipped and permuted copies are only made when they are used.
    flip = tf.random.stateless_uniform([], s_flip) < config.flip
    rgb, y_true = tf.cond(flip, lambda: (tf.image.flip_left_right(rgb), tf.image.flip_left_right(y_true)),
                          lambda: (rgb, y_true))

    swap = tf.random.stateless_uniform([], s_swap) < config.channel_swap
    order = tf.gather(tf.constant(_CHANNEL_ORDERS, tf.int32), tf.random.stateless_uniform([], s_order, 0, 6, dtype=tf.int32))
    rgb = tf.cond(swap, lambda: tf.gather(rgb, order, axis=-1), lambda: rgb)

    if config.brightness > 0:
        rgb = tf.image.stateless_random_brightness(rgb, config.brightness, s_bright)
    if config.contrast > 0:
        rgb = tf.image.stateless_random_contrast(rgb, 1 - config.contrast, 1 + config.contrast, s_contrast)
    rgb = tf.clip_by_value(rgb, 0.0, 1.0)
    if config.gamma > 0:
        # x ** g as exp(g log x): 5x faster than TF's pow on CPU; log(0) = -inf gives exp(-inf) = 0 = 0 ** g.
        gamma = tf.random.stateless_uniform([], s_gamma, 1 - config.gamma, 1 + config.gamma)
        rgb = tf.exp(gamma * tf.math.log(rgb))
    return rgb, y_true


def make_dataset(
    split: Split,
    *,
    batch_size: int,
    target_hw,
    input_hw=INPUT_HW,
    depth_scale: DepthScale = DepthScale(),
    training: bool = False,
    augmentation: Augment | None = Augment(),
    seed: int = 0,
    strict: bool = False,
) -> tf.data.Dataset:
    """The input pipeline: read -> decode -> resize -> augment (training only) -> batch -> prefetch.

    Yields (rgb float32 [B, *input_hw, 3] in [0, 1], y_true float32 [B, *target_hw, 2]) where y_true packs
    the encoded depth and its validity mask (see pack_target). training shuffles every epoch (seeded),
    augments and drops the last partial batch; the same seed gives the same batches.
    """
    examples = frames(split, strict=strict, shuffle_seed=seed if training else None, rgb_min_hw=input_hw).map(
        lambda frame: to_example(frame, input_hw, target_hw, depth_scale), num_parallel_calls=tf.data.AUTOTUNE
    )
    if training and augmentation is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        examples = tf.data.Dataset.zip(examples, seeds).map(
            lambda example, s: augment(*example, s, augmentation), num_parallel_calls=tf.data.AUTOTUNE
        )
    return examples.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------
# The synthetic NYU-format dataset (python data.py synth)
# ---------------------------------------------------------------------------

SYNTH_FRAMES = {"train": 600, "test": 40}  # the default synthetic set: what `make demo` and train.py use
EIGEN_CROP = (20, 459, 24, 615)  # DenseDepth's eigen_test_crop.npy: top, bottom, left, right (inclusive)
_SPLIT_IDS = {"train": 0, "test": 1}


def _frame_seed(seed: int, split: str, index: int) -> int:
    return int(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]).generate_state(1)[0])


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _jpeg(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _render_train(job):
    """(seed, index) -> (JPEG bytes, 8-bit depth PNG bytes) as in DenseDepth's nyu2_train."""
    rgb, depth = synth.render_frame(_frame_seed(*job))
    depth8 = np.clip(np.round(depth * (255.0 / 10.0)), 0, 255).astype(np.uint8)
    return _jpeg(rgb), _png(depth8)


def _render_test(job):
    """(seed, index) -> (RGB PNG, 16-bit mm depth PNG, rgb array, depth array in metres) as in nyu2_test."""
    rgb, depth = synth.render_frame(_frame_seed(*job))
    depth_mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
    return _png(rgb), _png(depth_mm), rgb, depth.astype(np.float32)


def _rendered(render, seed: int, split: str, count: int, pool, desc: str):
    jobs = [(seed, split, i) for i in range(count)]
    return tqdm(pool.imap(render, jobs, chunksize=2), total=count, desc=desc, unit="frame", file=sys.stderr)


def write_synthetic(out_dir, *, train: int = SYNTH_FRAMES["train"], test: int = SYNTH_FRAMES["test"], seed: int = 0,
                    workers: int = 2) -> Path:
    """Render `train` + `test` frames into out_dir/nyu_data.zip (DenseDepth's layout: JPEG + 8-bit depth for
    train, PNG + 16-bit mm depth for test) and out_dir/nyu_test.zip (eigen_test_{rgb,depth,crop}.npy holding
    the same test frames). Deterministic for a seed. Returns out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_rgb, tmp_depth = out_dir / ".eigen_test_rgb.npy", out_dir / ".eigen_test_depth.npy"
    rgb_stack = np.lib.format.open_memmap(tmp_rgb, "w+", np.uint8, (test, *NYU_FRAME_HW, 3))
    depth_stack = np.lib.format.open_memmap(tmp_depth, "w+", np.float32, (test, *NYU_FRAME_HW))
    train_rows, test_rows = [], []
    with multiprocessing.get_context("spawn").Pool(workers) as pool, zipfile.ZipFile(
        out_dir / "nyu_data.zip.partial", "w", zipfile.ZIP_STORED
    ) as zf:
        for i, (rgb, depth) in enumerate(_rendered(_render_train, seed, "train", train, pool, "train frames")):
            scene = f"data/nyu2_train/synth_{i // 50:04d}_out"
            train_rows.append((f"{scene}/{i}.jpg", f"{scene}/{i}.png"))
            zf.writestr(train_rows[-1][0], rgb)
            zf.writestr(train_rows[-1][1], depth)
        for i, (rgb_png, depth_png, rgb, depth) in enumerate(
            _rendered(_render_test, seed, "test", test, pool, "test frames")
        ):
            test_rows.append((f"data/nyu2_test/{i:05d}_colors.png", f"data/nyu2_test/{i:05d}_depth.png"))
            zf.writestr(test_rows[-1][0], rgb_png)
            zf.writestr(test_rows[-1][1], depth_png)
            rgb_stack[i], depth_stack[i] = rgb, depth
        for name, rows in (("nyu2_train", train_rows), ("nyu2_test", test_rows)):
            zf.writestr(f"data/{name}.csv", "".join(f"{r},{d}\n" for r, d in rows))
    rgb_stack.flush(), depth_stack.flush()
    del rgb_stack, depth_stack
    with zipfile.ZipFile(out_dir / "nyu_test.zip.partial", "w", zipfile.ZIP_STORED) as zf:
        zf.write(tmp_rgb, "eigen_test_rgb.npy")
        zf.write(tmp_depth, "eigen_test_depth.npy")
        crop = io.BytesIO()
        np.save(crop, np.asarray(EIGEN_CROP, np.int64))
        zf.writestr("eigen_test_crop.npy", crop.getvalue())
    tmp_rgb.unlink(), tmp_depth.unlink()
    # Renamed only when whole, so an interrupted run never leaves a zip that looks finished.
    for name in ("nyu_data.zip", "nyu_test.zip"):
        (out_dir / f"{name}.partial").replace(out_dir / name)
    return out_dir


def ensure_synthetic(out_dir, *, train: int = SYNTH_FRAMES["train"], test: int = SYNTH_FRAMES["test"],
                     seed: int = 0) -> Path:
    """out_dir, after writing the synthetic dataset there unless both of its zips already exist."""
    out_dir = Path(out_dir)
    if not ((out_dir / "nyu_data.zip").is_file() and (out_dir / "nyu_test.zip").is_file()):
        LOG.warning("writing the synthetic NYU-format dataset to %s (%d train, %d test frames)", out_dir, train, test)
        write_synthetic(out_dir, train=train, test=test, seed=seed)
    return out_dir


# ---------------------------------------------------------------------------
# python data.py inspect
# ---------------------------------------------------------------------------

def split_stats(split: Split, limit: int | None = None) -> dict:
    """Frame count, RGB shape(s), and depth min / max / mean (metres, valid pixels) and invalid fraction."""
    count = len(split) if limit is None else min(limit, len(split))
    shapes, lo, hi, total, valid, pixels, seen = {}, np.inf, -np.inf, 0.0, 0, 0, 0
    stream = frames(split).take(count).prefetch(tf.data.AUTOTUNE)
    for frame in tqdm(stream, total=count, desc=f"{split.name}", unit="frame", file=sys.stderr):
        seen += 1
        shape = "x".join(str(v) for v in frame["rgb"].shape)
        shapes[shape] = shapes.get(shape, 0) + 1
        depth = frame["depth"].numpy()
        good = depth[depth > 0]
        pixels, valid = pixels + depth.size, valid + good.size
        if good.size:
            lo, hi, total = min(lo, float(good.min())), max(hi, float(good.max())), total + float(good.sum(dtype=np.float64))
    return {
        "layout": split.layout,
        "frames": len(split),
        "frames_read": seen,
        "skipped": len(split.skipped),
        "rgb_shape": max(shapes, key=shapes.get) if shapes else None,
        "rgb_shapes": shapes,
        "depth_min_m": round(lo, 4) if valid else None,
        "depth_max_m": round(hi, 4) if valid else None,
        "depth_mean_m": round(total / valid, 4) if valid else None,
        "invalid_fraction": round(1 - valid / pixels, 5) if pixels else None,
        "crop": list(split.crop) if split.crop else None,
    }


def inspect(path, limit: int | None = None) -> dict:
    """{split name: split_stats} for every split of the dataset at `path`."""
    source = open_source(path)
    return {name: split_stats(split, limit) for name, split in source.splits.items()}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="NYU Depth V2 data: write the synthetic dataset, or inspect any dataset.")
    commands = parser.add_subparsers(dest="command", required=True)
    synth_cmd = commands.add_parser("synth", help="write the synthetic NYU-format dataset (nyu_data.zip, nyu_test.zip)")
    synth_cmd.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    synth_cmd.add_argument("--train", type=int, default=SYNTH_FRAMES["train"],
                           help=f"training frames (default: {SYNTH_FRAMES['train']})")
    synth_cmd.add_argument("--test", type=int, default=SYNTH_FRAMES["test"],
                           help=f"test frames, written to both zips (default: {SYNTH_FRAMES['test']})")
    synth_cmd.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same frames")
    synth_cmd.add_argument("--workers", type=int, default=2, help="rendering processes (default: 2)")
    inspect_cmd = commands.add_parser("inspect", help="print frame counts and depth statistics of a dataset as JSON")
    inspect_cmd.add_argument("path", help=f"dataset path: {EXPECTED_LAYOUTS}")
    inspect_cmd.add_argument("--limit", type=int, default=None, help="read only the first N frames of each split")
    args = parser.parse_args(argv)
    for flag in ("train", "test", "workers", "limit"):
        value = getattr(args, flag, None)
        if value is not None and value < (1 if flag == "workers" else 0):
            parser.error(f"--{flag} must be {'positive' if flag == 'workers' else 'zero or more'}, got {value}")
    return args


def main(args) -> int:
    try:
        if args.command == "synth":
            out = write_synthetic(args.out, train=args.train, test=args.test, seed=args.seed, workers=args.workers)
            print(f"wrote {out / 'nyu_data.zip'} ({args.train} train + {args.test} test frames) and {out / 'nyu_test.zip'}")
        else:
            print(json.dumps(inspect(args.path, args.limit), indent=2))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    logging.basicConfig(format="%(levelname)s: %(message)s")
    sys.exit(main(parse_args()))
