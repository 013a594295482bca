"""RGB-D captures as people record them: folders of colour and depth files, one folder per capture, and folders
of several captures read as one dataset. layouts.py detects these beside NYU's own layouts (capture_layout).

- "pairs", the own-captures layout: X_rgb.{jpg,jpeg,png} with X_depth.png (16-bit, mm) or X_depth.npy (metres)
  beside it; train/ and test/ subfolders become splits.
- "tum", a TUM RGB-D sequence (Sturm et al. 2012, the dataset's "File Formats" page): rgb.txt and depth.txt list
  "timestamp filename" lines ('#' comments) of rgb/*.png and depth/*.png; depth is 16-bit at 5000 per metre.
  Colour and depth are paired by TUM's associate.py rule (associate).
- "color-depth": a colour folder (color/, rgb/, image/ or images/) and depth/ whose files match by name or by
  number: Open3D's RealSense and Azure Kinect recorders and its Redwood samples write color/00000.jpg +
  depth/00000.png, ScanNet's exporter (SensorData.py) color/0.jpg + depth/0.png; 16-bit depth, mm by default.
- "captures": a folder of capture folders in those layouts (open_captures), with splits that hold out whole
  captures or contiguous blocks of each, never single frames among their video neighbours.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from readers import DataError, PairReader, folder_bytes
from splits import Source, Split

LOG = logging.getLogger("depth.layouts")

RGB_SUFFIXES = (".jpg", ".jpeg", ".png")

# ---------------------------------------------------------------------------
# The own-captures layout: X_rgb.* + X_depth.* pairs
# ---------------------------------------------------------------------------

def _pairs_in(folder: Path) -> list[tuple[str, str]]:
    """(rgb, depth) paths relative to `folder` for every X_rgb.{jpg,jpeg,png} with an X_depth.{png,npy} beside it."""
    pairs, orphans = [], []
    for rgb in sorted(p for p in folder.rglob("*_rgb.*") if p.suffix.lower() in RGB_SUFFIXES):
        stem = rgb.name[: -len("_rgb" + rgb.suffix)]
        beside = (rgb.with_name(f"{stem}_depth.png"), rgb.with_name(f"{stem}_depth.npy"))
        depth = next((d for d in beside if d.exists()), None)
        if depth is None:
            orphans.append(rgb)
        else:
            pairs.append((rgb.relative_to(folder).as_posix(), depth.relative_to(folder).as_posix()))
    if orphans:
        LOG.warning("%d RGB files in %s have no X_depth.png or X_depth.npy beside them and are left out (first: %s)",
                    len(orphans), folder, orphans[0])
    return pairs


def open_pairs(path: Path) -> Source:
    """A folder of X_rgb.* / X_depth.png (16-bit mm) or X_depth.npy (metres) pairs, the two kinds mixed as they
    come; train/ and test/ become splits."""
    folders = {name: path / name for name in ("train", "test") if (path / name).is_dir()} or {"all": path}
    splits = {}
    for name, folder in folders.items():
        keys = _pairs_in(folder)
        depth_format = "raw_f32_m" if all(d.endswith(".npy") for _, d in keys) else "png16_mm"
        splits[name] = Split(str(folder), "pairs", name, keys, PairReader(folder_bytes(folder)), "image", depth_format)
    return Source(str(path), "pairs", splits)


# ---------------------------------------------------------------------------
# TUM RGB-D sequences
# ---------------------------------------------------------------------------

TUM_UNITS_PER_METRE = 5000.0  # "the depth images are scaled by a factor of 5000" (TUM RGB-D, File Formats)
TUM_MAX_DIFFERENCE_S = 0.02  # associate.py's --max_difference default


def read_tum_list(path: Path) -> list[tuple[float, str]]:
    """The (timestamp in seconds, file name) of each line of a TUM list (rgb.txt, depth.txt), '#' lines skipped.

    Fields are split at spaces, tabs or commas, as associate.py's read_file_list does. DataError naming the first
    line that is not "timestamp filename"."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or line.startswith("#"):
            continue
        try:
            entries.append((float(fields[0]), fields[1]))
        except (ValueError, IndexError):
            raise DataError(f"{path} line {number} is {line.strip()!r}; each line must be 'timestamp filename' "
                            "(TUM RGB-D's format)") from None
    return entries


def associate(first, second, max_difference_s: float = TUM_MAX_DIFFERENCE_S) -> list[tuple[int, int]]:
    """Pairs (i, j) of first[i] with second[j] (timestamps in seconds) by TUM's associate.py rule: every pair
    closer than max_difference_s is a candidate; candidates are taken from the smallest difference up (ties by
    the first's, then the second's timestamp), each timestamp used at most once. Returned in the order of the
    first's timestamps. Candidates are found by binary search in the sorted second list, not all n x m pairs."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    order = np.argsort(second, kind="stable")
    lows = np.searchsorted(second[order], first - max_difference_s, side="left")
    highs = np.searchsorted(second[order], first + max_difference_s, side="right")
    candidates = sorted(
        (abs(first[i] - second[j]), first[i], second[j], i, j)
        for i in range(len(first)) for j in order[lows[i]:highs[i]]
        if abs(first[i] - second[j]) < max_difference_s)
    used_first, used_second, pairs = set(), set(), []
    for _, _, _, i, j in candidates:
        if i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            pairs.append((i, int(j)))
    return sorted(pairs, key=lambda pair: (first[pair[0]], second[pair[1]]))


def open_tum(path: Path) -> Source:
    """A TUM RGB-D sequence folder: colour and depth frames of rgb.txt and depth.txt paired by `associate`, one
    split "all" in time order; the count of frames left without a partner is logged. 16-bit depth at
    TUM_UNITS_PER_METRE (open_source's depth_units_per_metre overrides it)."""
    rgb, depth = read_tum_list(path / "rgb.txt"), read_tum_list(path / "depth.txt")
    pairs = associate([t for t, _ in rgb], [t for t, _ in depth])
    if len(pairs) < max(len(rgb), len(depth)):
        LOG.warning("%s: %d of %d colour and %d of %d depth frames have no partner within %g s (TUM's associate.py "
                    "rule) and are left out", path, len(rgb) - len(pairs), len(rgb), len(depth) - len(pairs),
                    len(depth), TUM_MAX_DIFFERENCE_S)
    keys = [(rgb[i][1], depth[j][1]) for i, j in pairs]
    split = Split(str(path), "tum", "all", keys, PairReader(folder_bytes(path)), "image", "png16_mm",
                  depth_units_per_metre=TUM_UNITS_PER_METRE)
    return Source(str(path), "tum", {"all": split})


# ---------------------------------------------------------------------------
# color/ + depth/ folders
# ---------------------------------------------------------------------------

COLOUR_FOLDERS = ("color", "rgb", "image", "images")  # Open3D's recorders and ScanNet, Redwood, others


def _colour_folder(path: Path) -> Path | None:
    """The colour folder of a color-depth capture at `path` (the first of COLOUR_FOLDERS), or None."""
    if not (path / "depth").is_dir():
        return None
    return next((path / name for name in COLOUR_FOLDERS if (path / name).is_dir()), None)


def _frame_id(stem: str) -> tuple:
    """What matches a colour file to its depth file, and orders frames: the number of an all-digit stem
    (ScanNet's 0.jpg matches 0.png, Open3D's 00000.jpg 00000.png), else the stem itself."""
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _files_by_id(folder: Path, suffixes) -> dict[tuple, str]:
    return {_frame_id(p.stem): p.name for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def open_color_depth(path: Path) -> Source:
    """A colour folder and depth/ (16-bit PNG, mm unless open_source's depth_units_per_metre says otherwise),
    files paired by name or number (_frame_id); one split "all" in frame order. Files without a partner are
    counted in a warning."""
    colour = _colour_folder(path)
    images, depths = _files_by_id(colour, RGB_SUFFIXES), _files_by_id(path / "depth", (".png",))
    matched = sorted(images.keys() & depths.keys())
    if len(matched) < max(len(images), len(depths)):
        LOG.warning("%s: %d colour files of %s/ and %d depth files of depth/ have no partner of the same name or "
                    "number and are left out", path, len(images) - len(matched), colour.name,
                    len(depths) - len(matched))
    keys = [(f"{colour.name}/{images[i]}", f"depth/{depths[i]}") for i in matched]
    split = Split(str(path), "color-depth", "all", keys, PairReader(folder_bytes(path)), "image", "png16_mm")
    return Source(str(path), "color-depth", {"all": split})


# ---------------------------------------------------------------------------
# A folder of captures, read as one dataset
# ---------------------------------------------------------------------------

# The held-out 'val' split of a capture without a test/ folder of its own: its frames in order, cut into blocks of
# VAL_BLOCK_FRAMES, with block VAL_BLOCK of every VAL_EVERY_BLOCKS held out (20 %; the first block always trains,
# so a capture of up to 20 frames gives none). Whole blocks, not single frames: neighbouring video frames are
# near copies, and a frame held out between two trained on would be seen in all but name.
VAL_BLOCK_FRAMES = 10
VAL_EVERY_BLOCKS = 5
VAL_BLOCK = 2
ALL_BUT = "all-but-"  # the prefix of the split of every frame but another split's: all-but-val, all-but-<capture>


def held_out_blocks(count: int) -> list[int]:
    """The positions among a capture's `count` frames (in order) that the 'val' split holds out."""
    return [i for i in range(count) if (i // VAL_BLOCK_FRAMES) % VAL_EVERY_BLOCKS == VAL_BLOCK]


def _capture_folders(path: Path) -> list[Path]:
    """The subfolders of `path` that are captures themselves (pairs, tum or color-depth), by name."""
    return [sub for sub in sorted(path.iterdir()) if sub.is_dir() and _one_capture(sub) is not None]


def _rooted(split: Split, root: Path) -> list[tuple[str, str]]:
    """split's (rgb, depth) keys as paths relative to `root`, a folder above the split's own."""
    prefix = Path(split.source).relative_to(root).as_posix()
    return [(f"{prefix}/{rgb}", f"{prefix}/{depth}") for rgb, depth in split.keys]


def _one_format(path: Path, captures: dict[str, Source]) -> tuple[str, float | None]:
    """(depth_format, depth_units_per_metre) that reads every capture's depth; DataError when captures store
    16-bit depth at different units (a split has one unit)."""
    units = {}  # depth_units_per_metre (None: the codec's own, mm) -> the captures storing 16-bit depth at it
    for name, source in captures.items():
        for split in source.splits.values():
            if split.depth_format != "raw_f32_m":
                units.setdefault(split.depth_units_per_metre, set()).add(name)
    if len(units) > 1:
        which = "; ".join(f"{', '.join(sorted(names))} at {unit or 1000:g} per metre" for unit, names in units.items())
        raise DataError(f"{path}: its captures store 16-bit depth in different units ({which}); give each capture "
                        "folder as a dataset of its own")
    return ("png16_mm" if units else "raw_f32_m"), next(iter(units), None)  # PNG splits read arrays as they come


def open_captures(path: Path) -> Source:
    """A folder of capture folders (each pairs, tum or color-depth) as one dataset, its frames keyed relative to
    `path`. Splits: 'all' (every frame); 'val' (each capture's test/ when it has one, else held_out_blocks of
    it) and 'all-but-val'; and with two captures or more, '<capture>' (its frames) and 'all-but-<capture>' for
    each, to hold out whole captures. Empty splits are left out. DataError when the captures' depth units
    differ or a capture's name is one of those split names."""
    captures = {folder.name: CAPTURE_OPENERS[_one_capture(folder)](folder) for folder in _capture_folders(path)}
    clash = next((name for name in captures if name in ("all", "val") or name.startswith(ALL_BUT)), None)
    if clash:
        raise DataError(f"{path}/{clash} is named like one of the splits of a folder of captures; rename it")
    frames, val = {}, []
    for name, source in captures.items():
        frames[name] = [key for split in source.splits.values() for key in _rooted(split, path)]
        own_test = source.splits.get("test")
        val += _rooted(own_test, path) if own_test else [frames[name][i] for i in held_out_blocks(len(frames[name]))]
    keys = {"all": [key for name in captures for key in frames[name]], "val": val}
    held_out = set(val)
    keys[ALL_BUT + "val"] = [key for key in keys["all"] if key not in held_out]
    for name in captures if len(captures) > 1 else ():
        keys[name] = frames[name]
        keys[ALL_BUT + name] = [key for other in captures if other != name for key in frames[other]]
    depth_format, units = _one_format(path, captures)
    reader = PairReader(folder_bytes(path))
    splits = {name: Split(str(path), "captures", name, k, reader, "image", depth_format, depth_units_per_metre=units)
              for name, k in keys.items() if k}
    return Source(str(path), "captures", splits)


CAPTURE_OPENERS = {"pairs": open_pairs, "tum": open_tum, "color-depth": open_color_depth}
OPENERS = {**CAPTURE_OPENERS, "captures": open_captures}

EXPECTED = (
    "a folder of X_rgb.jpg/png + X_depth.png (mm) or X_depth.npy (m) pairs, a TUM RGB-D sequence (rgb.txt, "
    "depth.txt), color/ (or rgb/, image/, images/) + depth/ folders, or a folder of such capture folders"
)


def _one_capture(path: Path) -> str | None:
    """The layout of `path` as one capture (a key of CAPTURE_OPENERS), or None; pairs may lie in subfolders."""
    if (path / "rgb.txt").is_file() and (path / "depth.txt").is_file():
        return "tum"
    if _colour_folder(path) is not None:
        return "color-depth"
    if next(path.rglob("*_rgb.*"), None) is not None:
        return "pairs"
    return None


def capture_layout(path: Path) -> str | None:
    """The capture layout of `path` (a key of OPENERS), judged from names only, or None. A folder of pairs that
    holds some itself or has train/ or test/ is one capture; one whose subfolders are captures is "captures"."""
    if not path.is_dir():
        return None
    single = _one_capture(path)
    if single in ("tum", "color-depth"):
        return single
    if single == "pairs" and (next(path.glob("*_rgb.*"), None) is not None
                              or any((path / name).is_dir() for name in ("train", "test"))):
        return "pairs"
    return "captures" if _capture_folders(path) else None
