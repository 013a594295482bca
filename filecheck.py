"""A frame's files checked from their headers alone (formats, sizes, bit depth, EXIF orientation, HEIF), before
anything is decoded (check_frame, by splits.Split.read), and decoded in full with PIL to say what is wrong with a
frame TensorFlow failed to decode (decode_problem). Shared with photos.py, which reads a user's photographs.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from nyu import DepthCodec


class FrameError(Exception):
    """One frame cannot be read as its split says it is stored; the message says why (Split.read)."""


RGB_FORMATS = {"image": "JPEG or PNG file bytes", "raw": "raw uint8 H x W x 3"}  # a Split's rgb_format


# Formats tf.io.decode_image reads, by PIL's name for them: an RGB file in another is refused by name.
RGB_FILE_FORMATS = ("JPEG", "PNG", "GIF", "BMP")
EXIF_ORIENTATION = 0x0112  # the EXIF tag: 1 = upright, 2-8 = mirrored and / or rotated (EXIF 2.3, section 4.6.4)
# Orientation -> (transposed, then flipped left-right, then upside down): how the stored image turns upright, as
# PIL.ImageOps.exif_transpose turns it (photos.read_rgb); decode.upright applies it in the graph.
EXIF_TURNS = {1: (False, False, False), 2: (False, True, False), 3: (False, True, True), 4: (False, False, True),
              5: (True, False, False), 6: (True, True, False), 7: (True, True, True), 8: (True, False, True)}
SWAPPED_ORIENTATIONS = tuple(o for o, (transposed, _, _) in EXIF_TURNS.items() if transposed)  # width <-> height

# What PIL raises for a file it cannot decode (UnidentifiedImageError and truncation are OSErrors).
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

# HEIC / HEIF, phones' usual photo format: Pillow opens it only through the pillow-heif plugin, used when installed.
HEIF_SUFFIXES = (".heic", ".heif", ".hif")
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")
HEIF_HINT = ("convert to JPEG first (heif-convert photo.heic photo.jpg, from libheif; sips -s format jpeg on macOS), "
             "or pip install pillow-heif, which is then used to read them")
try:
    from pillow_heif import register_heif_opener
except ImportError:
    pass
else:
    register_heif_opener()


def heif_readable() -> bool:
    """Whether Pillow here opens HEIC / HEIF files (pillow-heif is installed)."""
    return ".heic" in Image.registered_extensions()


def is_heif(head: bytes) -> bool:
    """Whether a file's first 12 bytes start a HEIF image (ISO/IEC 23008-12): a box size, 'ftyp', a HEIF brand."""
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def raw_depth(codec: DepthCodec, hw) -> bool:
    """Whether a frame's depth blob is raw float32 metres: always for a raw format, and for a frame whose reader
    handed over an array (hw = its shape, not (0, 0)), as PairReader does for X_depth.npy in a PNG folder."""
    return not codec.png or hw[0] > 0


def _rgb_header(blob: bytes) -> tuple[tuple[int, int], int]:
    """((height, width) upright, EXIF orientation 1-8) of an RGB file, from its header alone."""
    with Image.open(io.BytesIO(blob)) as image:
        if image.format not in RGB_FILE_FORMATS:
            raise ValueError(f"a {image.format} file; convert it to JPEG or PNG")
        width, height = image.size
        orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    orientation = orientation if orientation in range(1, 9) else 1
    return ((width, height) if orientation in SWAPPED_ORIENTATIONS else (height, width)), orientation


def _png_header(blob: bytes) -> tuple[tuple[int, int], int]:
    """((height, width), bit depth) from a PNG's IHDR: 8-byte signature, 4 length, 4 "IHDR", then width, height
    (4 bytes each, big-endian) and the bit depth."""
    return (int.from_bytes(blob[20:24], "big"), int.from_bytes(blob[16:20], "big")), blob[24]


def check_frame(rgb_format: str, depth_codec: DepthCodec, rgb: bytes, depth: bytes, hw) -> int:
    """The EXIF orientation (1-8) that turns the frame's RGB upright, once its blobs are checked to be in
    rgb_format (RGB_FORMATS) and depth_codec with raw size hw = (h, w), and of one size when upright (depth
    is registered to the upright image). FrameError says what is wrong.

    Only what each file's header says is checked: a file its decoder reads is never refused here (a JPEG
    with bytes after its end marker is read); one corrupt inside fails to decode later (decode_problem).
    """
    orientation, rgb_hw = 1, tuple(hw)
    if rgb_format == "raw" and len(rgb) != hw[0] * hw[1] * 3:
        raise FrameError(f"RGB: {len(rgb)} bytes for a {hw[0]}x{hw[1]}x3 frame")
    if rgb_format == "image":
        try:
            rgb_hw, orientation = _rgb_header(rgb)
        except IMAGE_ERRORS as err:
            if is_heif(rgb[:12]):
                raise FrameError("RGB: a HEIC / HEIF photo, which this pipeline cannot decode; convert it to JPEG or "
                                 "PNG (heif-convert photo.heic photo.jpg, from libheif)") from err
            raise FrameError(f"RGB: {'not a readable image' if rgb else 'empty file'} ({err})") from err
    if raw_depth(depth_codec, hw):
        if len(depth) != hw[0] * hw[1] * 4:
            raise FrameError(f"depth: {len(depth)} bytes for a {hw[0]}x{hw[1]} float32 frame")
        depth_hw = tuple(hw)
    else:
        if not depth.startswith(b"\x89PNG\r\n\x1a\n") or len(depth) < 33:
            what = "not a PNG" if depth else "empty file"
            raise FrameError(f"depth: {what}; expected a {depth_codec.description}")
        depth_hw, bits = _png_header(depth)
        if bits != 8 * np.dtype(depth_codec.dtype).itemsize:
            raise FrameError(f"depth: a {bits}-bit PNG; expected a {depth_codec.description}")
    if rgb_hw != depth_hw:
        turned = f" upright (EXIF orientation {orientation})" if orientation != 1 else ""
        raise FrameError(f"RGB is {rgb_hw[1]}x{rgb_hw[0]}{turned} but depth is {depth_hw[1]}x{depth_hw[0]}; "
                         "a depth map must match its image pixel for pixel")
    return orientation


def _damage(blob: bytes) -> str:
    if blob.startswith(b"\x89PNG") and b"IEND" not in blob[-64:]:
        return "truncated PNG (no IEND chunk at the end)"
    if blob.startswith(b"\xff\xd8") and b"\xff\xd9" not in blob:
        return "truncated JPEG (no end-of-image marker)"
    return "corrupt inside the file"


def decode_problem(rgb_format: str, depth_codec: DepthCodec, rgb: bytes, depth: bytes, hw) -> str | None:
    """Which of a frame's files PIL cannot decode in full, and what it says, or None when it decodes both.
    Slow (a whole decode): for a frame TensorFlow failed to decode, or to check every frame with --strict."""
    parts = [("RGB", rgb)] if rgb_format == "image" else []
    parts += [] if raw_depth(depth_codec, hw) else [("depth", depth)]
    for part, blob in parts:
        try:
            with Image.open(io.BytesIO(blob)) as image:
                image.load()
        except IMAGE_ERRORS as err:
            return f"{part}: {_damage(blob)} ({err})"
    return None
