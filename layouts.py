"""NYU Depth V2 in its common layouts, and your own RGB-D captures: where a dataset's frames are and how to read them.

`open_source(path)` detects the layout of `path` (see EXPECTED_LAYOUTS and the layouts table of docs/data.md) and
returns its splits (splits.Split, splits.Source); the capture-style folders (own captures, TUM RGB-D, color/ +
depth/, folders of captures) are captures.py's. A `Split` lists its frames and reads one frame at a time as two
encoded blobs, checked to be whole; decoding them into arrays is the input pipeline's work (data.py). Formats
follow each dataset's own documentation: DenseDepth's nyu_data.zip / nyu_test.zip, the official labeled .mat
(Silberman et al. 2012), BTS's sync/ and official_splits/ folders (Lee et al. 2019).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import zipfile
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from captures import EXPECTED as CAPTURES, OPENERS as CAPTURE_LAYOUTS, capture_layout
from nyu import DEPTH_CODECS, DEPTH_UNITS
from filecheck import FrameError  # re-exported with DataError: callers of the layouts import both from here
from readers import (
    Archive,
    DataError,
    H5FrameReader,
    LabeledMatReader,
    NpyFramesReader,
    PairReader,
    TFDS_SPLITS,
    TfdsFrames,
    folder_bytes,
    import_tfds,
)
from splits import Source, Split

LOG = logging.getLogger("depth.layouts")

# ---------------------------------------------------------------------------
# The layouts: one _open_* function each, chosen by _looks_like
# ---------------------------------------------------------------------------

def _csv_pairs(text: str, where: str) -> list[tuple[str, str]]:
    """The (rgb, depth) paths of DenseDepth's CSV lines "rgb_path,depth_path"; DataError naming the first line
    of `where` that has fewer than two columns."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            columns = [column.strip() for column in line.split(",")]
            if len(columns) < 2 or not all(columns[:2]):
                raise DataError(f"{where} line {number} is {line.strip()!r}; each line must be rgb_path,depth_path")
            pairs.append((columns[0], columns[1]))
    return pairs


def _open_densedepth(path: Path) -> Source:
    """DenseDepth's nyu_data.zip, or its extracted folder: data/nyu2_{train,test}.csv of rgb,depth paths."""
    archive = Archive(path)
    formats = {"train": "png8_10m", "test": "png16_mm"}
    splits = {}
    for name, depth_format in formats.items():
        csv_name = archive.find(f"nyu2_{name}.csv")
        if csv_name is None:
            continue
        keys = _csv_pairs(archive.read_text(csv_name), f"{path}: {csv_name}")
        read_bytes = archive.bytes_reader()
        if not archive.is_zip and keys and not (path / keys[0][0]).exists() and (path.parent / keys[0][0]).exists():
            read_bytes = folder_bytes(path.parent)  # the user pointed at the extracted data/ folder itself
        splits[name] = Split(str(path), "densedepth", name, keys, PairReader(read_bytes), "image", depth_format)
    return Source(str(path), "densedepth", splits)


def _open_eigen_npy(path: Path) -> Source:
    """DenseDepth's nyu_test.zip (or its folder): eigen_test_{rgb,depth,crop}.npy, depth in metres."""
    archive = Archive(path)
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
        splits[name] = Split(str(root), "bts", name, keys, PairReader(folder_bytes(root)), "image", "png16_mm")
    return Source(str(path), "bts", splits)


def _open_bundle(path: Path) -> Source:
    """A folder holding DenseDepth's two zips: train from nyu_data.zip, test from nyu_test.zip (the Eigen arrays)."""
    splits = {}
    if (path / "nyu_data.zip").is_file():
        splits.update(_open_densedepth(path / "nyu_data.zip").splits)
    if (path / "nyu_test.zip").is_file():
        splits.update(_open_eigen_npy(path / "nyu_test.zip").splits)
    return Source(str(path), "densedepth-bundle", splits)


_SPARSE_TO_DENSE = {"train": "train", "val": "test"}  # folder -> split; val/official holds NYU's 654 test frames


def _sparse_to_dense_folders(path: Path) -> dict[str, Path]:
    """{split: folder} of a sparse-to-dense nyudepthv2/ folder, or of its train/ or val/ itself: each folder
    holds <scene>/<n>.h5 files."""
    if path.name in _SPARSE_TO_DENSE:
        candidates = {_SPARSE_TO_DENSE[path.name]: path}
    else:
        candidates = {split: path / folder for folder, split in _SPARSE_TO_DENSE.items()}
    return {split: folder for split, folder in candidates.items() if next(folder.glob("*/*.h5"), None) is not None}


def _open_sparse_to_dense(path: Path) -> Source:
    """Sparse-to-dense's nyudepthv2/ (Ma & Karaman 2018): train/<scene>/<n>.h5 and val/official/<n>.h5, one frame
    per HDF5 file (rgb uint8 3 x H x W, depth float32 metres)."""
    splits = {}
    for name, folder in _sparse_to_dense_folders(path).items():
        keys = [(p.relative_to(folder).as_posix(),) for p in sorted(folder.glob("*/*.h5"))]
        splits[name] = Split(str(folder), "sparse-to-dense", name, keys, H5FrameReader(folder), "raw", "raw_f32_m")
    return Source(str(path), "sparse-to-dense", splits)


TFDS_PREFIX = "tfds:"


def _open_tfds(spec: str, data_dir=None) -> Source:
    """A TensorFlow Datasets dataset already prepared in data_dir (None: TFDS's default, $TFDS_DATA_DIR or
    ~/tensorflow_datasets), e.g. "tfds:nyu_depth_v2"; its train and validation splits become train and test.
    Never downloads: DataError saying how to prepare it when it is not there."""
    tfds = import_tfds()
    name = spec[len(TFDS_PREFIX):]
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (ValueError, AssertionError) as err:  # an unknown name, version or config, or a malformed one
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{spec}: TensorFlow Datasets cannot open {name!r} ({reason}); use tfds:nyu_depth_v2") from err
    if not {"image", "depth"} <= set(builder.info.features):
        raise DataError(f"{spec} has features {sorted(builder.info.features)}, not 'image' and 'depth'; "
                        "use tfds:nyu_depth_v2")
    # dataset_info.json first: is_prepared alone logs a warning of its own before our sentence.
    if not (builder.data_path / "dataset_info.json").exists() or not builder.is_prepared():
        raise DataError(
            f"{spec} is not prepared in {builder.data_dir}; prepare it once with: tfds build {name}"
            f"{f' --data_dir {data_dir}' if data_dir else ''} (for nyu_depth_v2 a 32 GB download), or point "
            "--data at the nyudepthv2/ folder that download extracts to")
    splits = {}
    for ours, theirs in TFDS_SPLITS.items():
        if theirs in builder.info.splits:
            reader = TfdsFrames(builder, theirs)
            keys = list(range(reader.length))
            splits[ours] = Split(spec, "tfds", ours, keys, None, "raw", "raw_f32_m", stream=reader)
    return Source(spec, "tfds", splits)


def _looks_like(path: Path) -> str | None:
    """The layout `path` is in, judged from names only (no frame is read)."""
    if path.is_dir() and ((path / "nyu_data.zip").is_file() or (path / "nyu_test.zip").is_file()):
        return "bundle"
    if path.suffix.lower() == ".mat" or (path / "nyu_depth_v2_labeled.mat").is_file():
        return "labeled-mat"
    if path.is_dir() and _sparse_to_dense_folders(path):
        return "sparse-to-dense"
    if path.is_dir() and any((path / folder).is_dir() for folder, _ in _BTS_LISTS.values()):
        return "bts"
    archive = Archive(path)
    if archive.is_zip or path.is_dir():
        if archive.find("nyu2_train.csv") or archive.find("nyu2_test.csv"):
            return "densedepth"
        if archive.find("eigen_test_rgb.npy"):
            return "eigen-npy"
    return capture_layout(path)


_OPENERS = {
    "bundle": _open_bundle,
    "labeled-mat": _open_labeled_mat,
    "bts": _open_bts,
    "densedepth": _open_densedepth,
    "eigen-npy": _open_eigen_npy,
    "sparse-to-dense": _open_sparse_to_dense,
    **CAPTURE_LAYOUTS,
}

EXPECTED_LAYOUTS = (
    "DenseDepth's nyu_data.zip or its extracted folder (data/nyu2_train.csv), nyu_test.zip (eigen_test_*.npy), "
    "nyu_depth_v2_labeled.mat, a BTS folder (sync/ or official_splits/test/), "
    f"sparse-to-dense's nyudepthv2/ (train/<scene>/*.h5, val/official/*.h5) or tfds:nyu_depth_v2, or {CAPTURES}"
)


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def add_depth_units_argument(parser) -> None:
    """Add --depth-units-per-metre (open_source's depth_units_per_metre), the one flag for the unit of 16-bit
    depth in every script that reads data (train.py, evaluate.py, data.py inspect)."""
    known = "; ".join(f"{unit:g} {who}" for unit, who in DEPTH_UNITS.items())
    parser.add_argument("--depth-units-per-metre", type=positive_float, default=None, metavar="N",
                        help=f"16-bit depth PNGs store N per metre (default: the layout's own, 1000 = mm): {known}")


def open_source(path, depth_units_per_metre: float | None = None, tfds_data_dir=None) -> Source:
    """Detect the layout of `path` and list its splits; a path in no known layout raises DataError.

    depth_units_per_metre (e.g. 5000 for TUM RGB-D, nyu.DEPTH_UNITS) replaces the unit of 16-bit depth files,
    the layouts' own millimetres by default; DataError for a dataset that stores no 16-bit depth.
    "tfds:NAME" reads TensorFlow Datasets' prepared copy from tfds_data_dir (None: TFDS's default).
    """
    source = _open_tfds(str(path), tfds_data_dir) if str(path).startswith(TFDS_PREFIX) else _open_path(path)
    if depth_units_per_metre is not None:
        if not any(DEPTH_CODECS[s.depth_format].units_vary for s in source.splits.values()):
            formats = sorted({DEPTH_CODECS[s.depth_format].description for s in source.splits.values()})
            raise DataError(f"{source.path} stores depth as {' and '.join(formats)}, not 16-bit integers; "
                            "drop --depth-units-per-metre")
        source = dataclasses.replace(source, splits={
            name: dataclasses.replace(split, depth_units_per_metre=depth_units_per_metre)
            for name, split in source.splits.items()})
    return source


def _open_path(path) -> Source:
    """The dataset at `path` in whichever layout _looks_like finds; DataError naming what is wrong."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; pass a dataset path (write the synthetic one with: python -m synth)")
    if path.suffix.lower() == ".zip" and not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a readable zip file (a truncated or corrupt download?); download it again")
    layout = _looks_like(path)
    if layout is None:
        raise DataError(f"{path} is not a dataset this project reads; expected {EXPECTED_LAYOUTS}")
    try:
        source = _OPENERS[layout](path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, scipy.io.matlab.MatReadError) as err:  # in pieces
        raise DataError(f"{path} looks like {layout} but part of it cannot be read ({type(err).__name__}: {err}); "
                        "is every file whole? download or write it again") from err
    if not any(len(s) for s in source.splits.values()):
        raise DataError(f"{path} looks like {layout} but holds no frames")
    return source


def evenly_spaced(length: int, count: int) -> np.ndarray:
    """int [min(count, length)]: positions in range(length), evenly spaced from the first to the last, no repeats;
    the frames a sample of a split takes (Split.subset), e.g. export.py's int8 calibration and evaluate.py's
    baseline frames and figures."""
    return np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int))
