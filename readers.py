"""How a frame's bytes are fetched from the files datasets ship (folders, zips, .npy stacks inside zips, MATLAB
v7.3 / HDF5, TensorFlow Datasets), one frame at a time and never a whole file; layouts.py builds on these and
filecheck.py checks what they fetch.

Every reader is safe to call from several tf.data threads: a zip is opened once per process and shared
(shared_zip), any other file keeps one open handle per thread.
"""
from __future__ import annotations

import functools
import io
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np



class DataError(Exception):
    """A user-facing problem with a dataset path or file; its message is one sentence naming the file and the fix."""


class LocalHandles(threading.local):
    """One open handle per thread, so parallel tf.data readers never share a file position."""

    def __init__(self, opener):
        self.opener, self.handle = opener, None

    def get(self):
        if self.handle is None:
            self.handle = self.opener()
        return self.handle


def folder_bytes(root: Path):
    return lambda ref: (root / ref).read_bytes()


@functools.lru_cache(maxsize=8)
def _open_zip(path: str, mtime_ns: int, size: int) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def shared_zip(zip_path: Path) -> zipfile.ZipFile:
    """One open ZipFile per zip (and version of it) per process: opening one parses the whole central directory
    (100,000 entries in a 50,000-frame nyu_data.zip), once, not per open and per tf.data thread (docs/scale.md).
    Threads share it safely: each member is read through its own file object, seeking under the ZipFile's lock."""
    stat = Path(zip_path).stat()
    return _open_zip(str(zip_path), stat.st_mtime_ns, stat.st_size)


def zip_bytes(zip_path: Path):
    archive = shared_zip(zip_path)
    return lambda ref: archive.read(ref)


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
        self.rgb = NpyStack(open_member, rgb_name)
        self.depth = NpyStack(open_member, depth_name)
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


class NpyStack:
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
        self.handles = LocalHandles(lambda: open_member(name))

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
        self.handles = LocalHandles(lambda: h5py.File(mat_path, "r"))

    def __call__(self, index):
        f = self.handles.get()
        rgb = np.ascontiguousarray(np.transpose(f["images"][int(index)], (2, 1, 0)), np.uint8)
        depth = np.ascontiguousarray(f["depths"][int(index)].T, np.float32)
        return rgb.tobytes(), depth.tobytes(), depth.shape


class Archive:
    """A zip file or a folder, read alike: entries are '/'-separated paths relative to its root."""

    def __init__(self, path: Path):
        self.path = path
        self.is_zip = path.is_file() and zipfile.is_zipfile(path)
        self.names = shared_zip(path).namelist() if self.is_zip else None

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
        return zip_bytes(self.path) if self.is_zip else folder_bytes(self.path)

    def opener(self):
        """name -> a fresh seekable binary file object for that entry."""
        if self.is_zip:
            return shared_zip(self.path).open
        return lambda name: open(self.path / name, "rb")


# ---------------------------------------------------------------------------
# Sparse-to-dense's one HDF5 file per frame, and TensorFlow Datasets' prepared copy
# ---------------------------------------------------------------------------

class H5FrameReader:
    """One frame per HDF5 file, as sparse-to-dense's nyudepthv2/ ships it (Ma & Karaman 2018): `rgb` uint8
    [3, H, W] (channels first) and `depth` float32 [H, W] in metres; key = (path relative to root,).

    Each call opens and closes its own file, so parallel tf.data threads never share a handle.
    """

    def __init__(self, root: Path):
        self.root = root

    def __call__(self, key):
        with h5py.File(self.root / key[0], "r") as f:
            rgb, depth = f["rgb"][()], f["depth"][()]  # KeyError if either is missing
        if rgb.ndim != 3 or rgb.shape[0] != 3 or depth.ndim != 2:
            raise ValueError(f"rgb {rgb.shape} and depth {depth.shape}: expected 3 x H x W and H x W")
        rgb = np.ascontiguousarray(np.transpose(rgb_as_uint8(rgb), (1, 2, 0)))
        return rgb.tobytes(), np.ascontiguousarray(depth, np.float32).tobytes(), depth.shape


def rgb_as_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB values of any shape as uint8: integers in 0-255 as they are; floats with every value in [0, 1] (as some
    conversions of sparse-to-dense's files store colour) times 255, else floats in [0, 255], rounded. A plain cast
    would read [0, 1] colour as black. ValueError saying the range found for anything else."""
    if rgb.dtype == np.uint8:
        return rgb
    lo, hi = (float(rgb.min()), float(rgb.max())) if rgb.size else (0.0, 0.0)
    if not (np.isfinite([lo, hi]).all() and lo >= 0 and hi <= 255):
        raise ValueError(f"rgb holds {rgb.dtype} values from {lo:g} to {hi:g}; expected uint8 (0-255) or floats in "
                         "[0, 1] or [0, 255]")
    if rgb.dtype.kind == "f":
        rgb = np.round(rgb * 255.0 if hi <= 1.0 else rgb)
    return rgb.astype(np.uint8)


TFDS_SPLITS = {"train": "train", "test": "validation"}  # our split -> TFDS's (nyu_depth_v2 has no "test")
TFDS_SHUFFLE_FRAMES = 128  # decoded frames held for shuffling (~190 MB at 480x640); files are interleaved too


def import_tfds():
    """The tensorflow_datasets module; DataError naming the package when it is not installed."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(f"reading a tfds: dataset needs the tensorflow-datasets package ({err}); "
                        "install it with: pip install tensorflow-datasets") from err
    return tfds


class TfdsFrames:
    """A split of a TensorFlow Datasets dataset with `image` uint8 [H, W, 3] and `depth` [H, W] metres features
    (TFDS's nyu_depth_v2 stores depth as float16), read through builder.as_dataset; never downloads.

    TFRecords cannot fetch frame i alone, so this yields decoded frames rather than bytes (layouts.Split.stream).
    """

    def __init__(self, builder, tfds_split: str):
        self.builder, self.tfds_split = builder, tfds_split
        self.length = builder.info.splits[tfds_split].num_examples

    def __call__(self, keys, shuffle_seed=None):
        """Frames `keys` (indices into the TFDS split, in the order given) as a tf.data.Dataset of dicts: rgb uint8
        [H, W, 3], depth float32 [H, W, 1] metres, index int64 = the frame's position in keys (as data.frames).
        shuffle_seed reshuffles every epoch: the whole split's files interleaved in a seeded order, then a
        TFDS_SHUFFLE_FRAMES buffer (index then counts frames as read: training, which never needs it)."""
        import tensorflow as tf

        tfds = import_tfds()
        keys = [int(k) for k in keys]
        if shuffle_seed is not None and keys == list(range(self.length)):
            examples = self.builder.as_dataset(split=self.tfds_split, shuffle_files=True,
                                               read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed))
            return _frame_dicts(examples.enumerate()).shuffle(TFDS_SHUFFLE_FRAMES, seed=shuffle_seed)
        # In the order asked: one slice per contiguous run of keys (TFDS skips the shards before each), read one
        # file at a time (by default TFDS interleaves 16 files in blocks of 16 frames, even unshuffled).
        spec = "+".join(f"{self.tfds_split}[{first}:{last + 1}]" for first, last in _contiguous_runs(keys))
        examples = self.builder.as_dataset(split=spec or self.tfds_split,
                                           read_config=tfds.ReadConfig(interleave_cycle_length=1))
        frames = _frame_dicts(tf.data.Dataset.zip(tf.data.Dataset.range(len(keys)), examples))
        return frames if shuffle_seed is None else frames.shuffle(TFDS_SHUFFLE_FRAMES, seed=shuffle_seed)


def _frame_dicts(indexed):
    """(index, TFDS example) pairs -> dicts of rgb uint8 [H, W, 3], depth float32 [H, W, 1] metres, index."""
    import tensorflow as tf

    return indexed.map(tf.autograph.experimental.do_not_convert(lambda index, example: {
        "rgb": example["image"],
        "depth": tf.cast(example["depth"], tf.float32)[..., None],
        "index": index,
    }), num_parallel_calls=tf.data.AUTOTUNE)


def _contiguous_runs(indices: list[int]) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive values in `indices`, in order: [2, 0, 1, 5] -> (2, 2), (0, 1),
    (5, 5)."""
    runs = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    return runs
