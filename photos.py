"""Finding and reading the photographs predict.py and evaluate.py's --photos take: files, folders and glob patterns
(each file once, by its real path, through symlink loops too) and any common image mode as upright RGB uint8.
HEIC / HEIF photos are read where pillow-heif is installed, and otherwise named with how to convert them.
Deliberately free of TensorFlow.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from filecheck import (EXIF_ORIENTATION, HEIF_HINT, HEIF_SUFFIXES, IMAGE_ERRORS, SWAPPED_ORIENTATIONS, heif_readable,
                     is_heif)

# PIL modes holding more than 8 bits of grey -> their full-scale value, mapped to 255 (scaled, never clipped).
# "I" is how older Pillow versions (and some TIFFs) open 16-bit greyscale.
_HIGH_BIT_GREY = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def read_rgb(path) -> np.ndarray:
    """An image file in any common mode -> RGB uint8 [H, W, 3], turned upright by its EXIF orientation
    (see open_rgb)."""
    return open_rgb(path)[0]


def open_rgb(path, min_hw=None) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 [h, w, 3], the image's own (H, W)) of an image file in any common mode, upright by its EXIF
    orientation (as the training pipeline turns it, filecheck.EXIF_TURNS). With min_hw (h, w), a JPEG is decoded
    at the smallest of 1, 1/2, 1/4, 1/8 scale still covering it (as the training pipeline decodes it): what a
    network input needs, in a 64th of the memory for an 80-megapixel photograph.

    Greyscale and palette images become grey / their colours; 16-bit greyscale is scaled to 8 bits
    (65535 -> 255); transparent pixels are composited over white. Raises one of IMAGE_ERRORS for a file
    that is not a readable image.
    """
    with Image.open(path) as image:
        turned = image.getexif().get(EXIF_ORIENTATION, 1) in SWAPPED_ORIENTATIONS
        full_hw = (image.width, image.height) if turned else (image.height, image.width)
        if min_hw is not None:
            image.draft(image.mode, tuple(min_hw) if turned else tuple(min_hw[::-1]))  # (width, height) as stored
        image.load()  # decoded here, so corrupt pixel data fails here
        ImageOps.exif_transpose(image, in_place=True)  # no copy of an upright photograph
    full_scale = _HIGH_BIT_GREY.get(image.mode)
    if full_scale is not None:
        grey = np.asarray(image, np.float64) * (255.0 / full_scale)
        image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB")), full_hw


def _name_matches(name: str, part: str) -> bool:
    """One path component against one glob component, as glob.glob matches it: a wildcard never matches a
    leading '.' (hidden files and folders) unless the component starts with one."""
    return fnmatch.fnmatchcase(name, part) and (not name.startswith(".") or part.startswith("."))


def _parts_match(names: tuple, parts: tuple) -> bool:
    """Path components `names` against glob components `parts`, where '**' matches any number of folders."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_parts_match(names[i:], parts[1:]) for i in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:i]))
    return bool(names) and _name_matches(names[0], parts[0]) and _parts_match(names[1:], parts[1:])


def expand_glob(pattern: str) -> list[Path]:
    """The paths matching a glob pattern, sorted. '**' matches any number of folders, following folder symlinks
    except one back into a folder it is already inside: glob.glob(recursive=True) follows a symlink loop until the
    system refuses ("too many levels"), listing the same files again at every level, and with two links in a loop
    it never ends."""
    if "**" not in pattern:
        return [Path(p) for p in sorted(glob.glob(pattern))]
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if re.search(r"[*?[]", part))  # the first component to match
    root = Path(*parts[:first]) if first else Path()
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        names = Path(folder).relative_to(root).parts
        inside = {os.path.realpath(Path(root, *names[:i])) for i in range(len(names) + 1)}  # this folder and above
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) not in inside]
        found += [Path(folder, name) for name in dirs + files if _parts_match((*names, name), parts[first:])]
    return sorted(found)


def find_inputs(patterns) -> tuple[list[Path], list[str], dict[Path, list[str]]]:
    """(image paths, patterns that matched nothing, {folder: names of the HEIC / HEIF photos left out of it}) for
    `patterns`: files (taken as given), folders (the image files directly inside, by extension) or glob patterns
    (expand_glob). Sorted within a pattern, each file once by its real path (a file reached through a symlink too is
    the first path found). HEIC photos are left out of folders only where Pillow cannot read them (heif_readable)."""
    image_suffixes = set(Image.registered_extensions())
    paths, unmatched, unsupported = {}, [], {}  # paths: real path -> the path as found
    for pattern in patterns:
        matches = [Path(pattern)] if Path(pattern).exists() else expand_glob(pattern)
        found = []
        for match in matches:
            if match.is_dir():
                files = sorted(p for p in match.iterdir() if p.is_file())
                found += [p for p in files if p.suffix.lower() in image_suffixes]
                if heic := [p.name for p in files if p.suffix.lower() in HEIF_SUFFIXES and not heif_readable()]:
                    unsupported[match] = heic
            elif match.is_file():
                found.append(match)
        if not found and not any(unsupported.get(m) for m in matches):
            unmatched.append(pattern)
        for path in found:
            paths.setdefault(os.path.realpath(path), path)
    return list(paths.values()), unmatched, unsupported


def report_inputs_left_out(unmatched: list[str], unsupported: dict[Path, list[str]]) -> None:
    """One line on stderr per pattern that matched nothing and per folder whose HEIC / HEIF photos were left out."""
    for pattern in unmatched:
        print(f"{pattern}: matched no file", file=sys.stderr)
    for folder, names in unsupported.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        print(f"{folder}: skipped {len(names)} HEIC / HEIF photos ({shown}): this installation cannot read them; "
              f"{HEIF_HINT}", file=sys.stderr)


def unreadable_text(path: Path, err: Exception) -> str:
    """Why an input image was skipped, in one line naming it: a HEIC / HEIF photo Pillow cannot read here gets the
    conversion hint (by its suffix or its first bytes), anything else what Pillow said."""
    try:
        with open(path, "rb") as f:
            heif = is_heif(f.read(12)) or path.suffix.lower() in HEIF_SUFFIXES
    except OSError:
        heif = False
    if heif and not heif_readable():
        return f"{path}: a HEIC / HEIF photo, which this installation cannot read; {HEIF_HINT}"
    return f"{path}: not a readable image ({err})"


def read_photos(patterns, max_photos: int) -> list[tuple[str, np.ndarray]]:
    """(file name, RGB uint8 [H, W, 3]) of the first max_photos readable images, by file name, among `patterns`
    (as find_inputs takes them); patterns matching nothing and unreadable files are named on stderr and skipped."""
    paths, unmatched, unsupported = find_inputs(patterns)
    report_inputs_left_out(unmatched, unsupported)
    photos = []
    for path in sorted(paths, key=lambda p: p.name):
        if len(photos) == max_photos:
            break
        try:
            photos.append((path.name, read_rgb(path)))
        except IMAGE_ERRORS as err:
            print(unreadable_text(path, err), file=sys.stderr)
    return photos
