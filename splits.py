"""A dataset's splits: `Split` lists one split's frames and reads one frame at a time as checked blobs; `Source`
holds a dataset's splits by name. The layouts (layouts.py, captures.py) build them; data.py decodes their blobs.
Both are values: the frames a pipeline leaves out go to a `SkipLog` that whoever reads the split holds.
"""
from __future__ import annotations

import dataclasses
import threading
import zipfile

from nyu import DEPTH_CODECS, DepthCodec
from filecheck import FrameError, check_frame
from readers import DataError


INTERSECT = "&"  # --train-split A&B: the frames in both splits A and B (Source.split)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a dataset: its frame keys (a tuple) and a reader that turns a key into its blobs. A value:
    frozen and hashable; the frames a pass leaves out are a SkipLog's, not the split's.

    reader(key) -> (rgb_bytes, depth_bytes, (h, w)); (h, w) is the raw arrays' shape for raw formats, (0, 0)
    for files. rgb_format is a key of filecheck.RGB_FORMATS, depth_format one of nyu.DEPTH_CODECS (depth handed
    over as an array is float32 metres whatever it says: filecheck.raw_depth). crop is (top, bottom, left,
    right) in pixels of the full frame when the data ships one (Eigen's). depth_units_per_metre, when given,
    replaces the unit of 16-bit depth (--depth-units-per-metre).
    """

    source: str
    layout: str
    name: str
    keys: tuple
    reader: object
    rgb_format: str
    depth_format: str
    crop: tuple | None = None
    depth_units_per_metre: float | None = None
    # For data that cannot be read a frame at a time (TFDS's TFRecords): stream(keys, shuffle_seed) -> a
    # tf.data.Dataset of decoded frames (readers.TfdsFrames); reader is then None and data.py starts from these.
    stream: object = None

    @property
    def depth_codec(self) -> DepthCodec:
        """How the split's depth files store metres: nyu.DEPTH_CODECS[depth_format], at depth_units_per_metre
        for 16-bit depth when that is given."""
        codec = DEPTH_CODECS[self.depth_format]
        if self.depth_units_per_metre is None or not codec.units_vary:
            return codec
        return codec.with_units(self.depth_units_per_metre)

    def __post_init__(self):
        object.__setattr__(self, "keys", tuple(self.keys))  # the layouts list them; a value holds them fixed

    def __len__(self):
        return len(self.keys)

    def frame_name(self, index: int) -> str:
        """A short name for frame `index`: its RGB file's path, or "<split>_<index>" for frames in an array."""
        key = self.keys[index]
        return key[0] if isinstance(key, tuple) else f"{self.name}_{int(key):05d}"

    def describe(self, index: int) -> str:
        """Where frame `index` lives, for warnings: the file (and member or row) a user can go and look at."""
        key = self.keys[index]
        where = " + ".join(key) if isinstance(key, tuple) else f"frame {int(key)}"
        return f"{self.source}: {where}"

    def read(self, index: int) -> tuple[bytes, bytes, tuple[int, int], int]:
        """Frame `index` as (rgb blob, depth blob, raw (h, w), EXIF orientation of the RGB), checked by
        filecheck.check_frame.

        Raises FrameError saying what is wrong with it (missing, unreadable, wrong format, sizes that differ).
        """
        try:
            rgb, depth, hw = self.reader(self.keys[index])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:  # missing, unreadable, bad .npy
            raise FrameError(f"{type(err).__name__}: {err}") from err
        return rgb, depth, hw, check_frame(self.rgb_format, self.depth_codec, rgb, depth, hw)

    def subset(self, indices) -> Split:
        """The frames at `indices` as a split of their own (same names, reader and crop)."""
        return dataclasses.replace(self, keys=[self.keys[int(i)] for i in indices])


class SkipLog:
    """The frames one reader of a split left out, and why: filled by the input pipeline (decode.frames, from
    tf.data's threads, hence the lock) and by whoever else leaves a frame out (evaluate.py's frames without ground
    truth); emptied by `take` (callbacks.SkippedFrames at each epoch's end, evaluate.py's final list). A frame
    counts once however often it is read (the output-bias pass, every epoch) until taken."""

    def __init__(self):
        self._lock = threading.Lock()
        self._skipped = {}  # where the frame is (Split.describe) -> "where: why", in the order first left out

    def record(self, where: str, problem: str) -> None:
        """Note that the frame at `where` (Split.describe) was left out for `problem`."""
        with self._lock:
            self._skipped[where] = f"{where}: {problem}"  # a frame met again keeps its first place: one frame

    def take(self) -> list[str]:
        """The distinct frames left out since the last take ("where: why" each), and forget them."""
        with self._lock:
            taken = list(self._skipped.values())
            self._skipped.clear()
        return taken

    @property
    def count(self) -> int:
        """How many distinct frames were left out since the last take."""
        with self._lock:
            return len(self._skipped)


def nothing_usable(split: Split, skipped: SkipLog, tried: int, usable: str = "is readable") -> DataError:
    """The error for a pass over `tried` frames of `split` that found none that `usable` says: one sentence naming
    the split, the count and the first frame the pass left out (where, and why, from `skipped`, which is taken)."""
    taken = skipped.take()
    first = f"the first: {taken[0]}" if taken else "none was skipped"
    return DataError(f"no frame of {split.source} [{split.name}] {usable} ({tried} tried); {first}")


@dataclasses.dataclass
class Source:
    """A dataset on disk: its layout name and its splits by name (train / test / all)."""

    path: str
    layout: str
    splits: dict

    def split(self, name: str) -> Split:
        """The split called `name`; DataError listing the splits there are if it has none. 'A&B' is the frames of
        split A that split B holds too, in A's order (e.g. a folder of captures' 'all-but-val&all-but-<capture>':
        the training frames of every capture but one)."""
        if INTERSECT in name:
            first, *others = (self.split(part) for part in name.split(INTERSECT))
            shared = set.intersection(*(set(other.keys) for other in others))
            return dataclasses.replace(first, name=name, keys=[key for key in first.keys if key in shared])
        if name not in self.splits:
            raise DataError(
                f"{self.path} ({self.layout}) has no '{name}' split; it has: {', '.join(self.splits) or 'none'}"
            )
        return self.splits[name]
