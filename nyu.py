"""Facts about NYU Depth V2 that every script shares: frame size, camera intrinsics, depth range, crops,
published results, and the codecs of the depth files NYU's copies ship (DEPTH_CODECS).

Sources: Silberman et al. 2012 (the dataset and its toolbox, camera_params.m), Eigen et al. 2014 (the
evaluation crop, as DenseDepth ships it in eigen_test_crop.npy), Lee et al. 2019 (BTS's crop),
Alhashim & Wonka 2018 (DenseDepth's 0.1-10 m range and its 8-bit training depth), and each paper of
PUBLISHED for its own row. Deliberately free of TensorFlow: the renderer's worker processes import it.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

FRAME_HW = (480, 640)  # (height, width) of every NYU frame
INPUT_HW = (240, 320)  # the seed paper's network input (height, width): half of an NYU frame

# The Kinect colour camera, in pixels at 640x480 (Silberman et al. 2012 toolbox, camera_params.m).
INTRINSICS = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}

# The depth range DenseDepth trains and evaluates NYU in, metres: the default of every script and model.
MIN_DEPTH_M = 0.1
MAX_DEPTH_M = 10.0


@dataclasses.dataclass(frozen=True)
class Crop:
    """An evaluation crop of a 480x640 frame: box = (top, bottom, left, right) in pixels, all inclusive."""

    box: tuple[int, int, int, int]
    whose: str


CROPS = {
    "eigen": Crop((20, 459, 24, 615), "Eigen's, as in DenseDepth's eigen_test_crop.npy"),
    "bts": Crop((45, 470, 41, 600), "BTS / AdaBins'"),
}
EIGEN_CROP = CROPS["eigen"].box  # what DenseDepth's nyu_test.zip stores, and the synthetic set writes

PUBLISHED_ON = "published, NYU Depth V2 test (654)"

# Results as each paper reports them on NYU Depth V2's official test split (654 images); None where it gives none.
PUBLISHED_METRICS = ("delta1", "delta2", "delta3", "abs_rel", "rmse", "log10")
PUBLISHED = [dict(zip(("method", *PUBLISHED_METRICS), row)) for row in (
    # method                                                       delta1 delta2 delta3 abs_rel rmse   log10
    ("Eigen & Fergus 2015 (the seed paper's Eigen et al.)",          0.769, 0.950, 0.988, 0.158, 0.641, None),
    ("Laina et al. 2016",                                            0.811, 0.953, 0.988, 0.127, 0.573, 0.055),
    ("Alhashim & Wonka 2018 (DenseDepth)",                           0.846, 0.974, 0.994, 0.123, 0.465, 0.053),
    ("Alhashim & Wonka 2018 (DenseDepth), per-image median scaling", 0.895, 0.980, 0.996, 0.103, 0.390, None),
    ("seed paper (CS231N): UNet",                                    0.558, 0.712, 0.836, 0.384, 0.751, None),
    ("seed paper (CS231N): transfer model",                          0.661, 0.784, 0.837, 0.292, 0.682, None),
    ("Lee et al. 2019 (BTS)",                                        0.885, 0.978, 0.994, 0.110, 0.392, 0.047),
    ("Bhat et al. 2021 (AdaBins)",                                   0.903, 0.984, 0.997, 0.103, 0.364, 0.044),
)]


def box_text(box) -> str:
    """'rows 20-459, columns 24-615' for box = (top, bottom, left, right)."""
    top, bottom, left, right = box
    return f"rows {top}-{bottom}, columns {left}-{right}"


def scaled_intrinsics(hw, intrinsics=INTRINSICS, from_hw=FRAME_HW) -> dict:
    """`intrinsics` (pixels, calibrated at from_hw) for the same camera's image resized to hw = (height, width).

    Pixel centres sit at integer coordinates (as in the synthetic renderer), so a centre moves by
    (c + 0.5) * scale - 0.5.
    """
    sy, sx = hw[0] / from_hw[0], hw[1] / from_hw[1]
    return {
        "fx": intrinsics["fx"] * sx,
        "fy": intrinsics["fy"] * sy,
        "cx": (intrinsics["cx"] + 0.5) * sx - 0.5,
        "cy": (intrinsics["cy"] + 0.5) * sy - 0.5,
    }


# ---------------------------------------------------------------------------
# Depth files: depth_m = stored value / units_per_metre, 0 = no depth
# ---------------------------------------------------------------------------

PNG_UNIT_KEY = "depth_units_per_metre"  # the PNG text chunk every depth PNG this project writes carries


_CHUNK = 1 << 20  # values converted per step by DepthCodec.from_metres


@dataclasses.dataclass(frozen=True)
class DepthCodec:
    """How a depth file stores metres: depth_m = value / units_per_metre, and 0 means no depth; so does
    `saturated`, the value a sensor writes where it measured nothing in range (Kinect v2's 65535)."""

    description: str
    dtype: str  # numpy dtype of the stored values
    units_per_metre: float
    png: bool  # stored as a greyscale PNG (else as raw values)
    saturated: int | None = None

    @property
    def integer(self) -> bool:
        """True for integer storage (unsigned: 0 = no depth)."""
        return np.dtype(self.dtype).kind == "u"

    @property
    def units_vary(self) -> bool:
        """True for 16-bit depth, which datasets store at different units per metre (DEPTH_UNITS); DenseDepth's
        8-bit depth and float metres have one meaning each."""
        return self.dtype == "uint16"

    def with_units(self, units_per_metre: float) -> DepthCodec:
        """This 16-bit format read at another unit (TUM's 5000 per metre, Kinect v2's 10000, KITTI's 256)."""
        if not self.units_vary:
            raise ValueError(f"{self.description} has a fixed unit")
        if units_per_metre == self.units_per_metre:
            return self
        return dataclasses.replace(self, units_per_metre=float(units_per_metre),
                                   description=f"16-bit PNG, {units_per_metre:g} per metre")

    @property
    def max_depth_m(self) -> float:
        """The farthest depth the file can hold (inf for floats)."""
        return np.iinfo(self.dtype).max / self.units_per_metre if self.integer else float("inf")

    def to_metres(self, values) -> np.ndarray:
        """Stored values (any shape) -> float32 metres, same shape; `saturated` values -> 0 (no depth)."""
        values = np.asarray(values)
        depth_m = values.astype(np.float32) / np.float32(self.units_per_metre)
        return depth_m if self.saturated is None else np.where(values == self.saturated, np.float32(0), depth_m)

    def from_metres(self, depth_m) -> np.ndarray:
        """Metres (any shape) -> stored values of `dtype`, rounded to the nearest unit and clipped to the
        type's range (so a 16-bit depth beyond max_depth_m is stored as saturated); NaN, inf, zero and negative
        depths are stored as 0 (no depth)."""
        depth_m = np.asarray(depth_m)
        flat, stored = depth_m.reshape(-1), np.empty(depth_m.size, self.dtype)
        for start in range(0, flat.size, _CHUNK):  # in float64 a chunk at a time: a whole 80-megapixel map is 640 MB
            part = flat[start:start + _CHUNK].astype(np.float64)
            part = np.where(np.isfinite(part) & (part > 0), part, 0.0)
            if self.integer:
                part = np.clip(np.round(part * self.units_per_metre), 0, np.iinfo(self.dtype).max)
            stored[start:start + _CHUNK] = part
        return stored.reshape(depth_m.shape)

    def png_bytes(self, depth_m) -> bytes:
        """Depth [H, W] metres -> the PNG file's bytes (see from_metres)."""
        if not self.png:
            raise ValueError(f"{self.description} is not a PNG format")
        out = io.BytesIO()
        unit = PngInfo()
        unit.add_text(PNG_UNIT_KEY, f"{self.units_per_metre:g}")  # so a reader never has to guess the unit
        Image.fromarray(self.from_metres(depth_m)).save(out, format="PNG", compress_level=3, pnginfo=unit)
        return out.getvalue()


# The depth formats of the layouts layouts.py reads, by the name a Split records, and predict.py writes.
# 16-bit depth's largest value is never a measured depth: Kinect v2 tools write it for "out of range", and
# in millimetres it would be 65.5 m, beyond every indoor sensor.
DEPTH_CODECS = {
    "png8_10m": DepthCodec("8-bit PNG, 255 = 10 m (DenseDepth's training depth)", "uint8", 255.0 / 10.0, png=True),
    "png16_mm": DepthCodec("16-bit PNG in millimetres", "uint16", 1000.0, png=True, saturated=65535),
    "png16_kitti": DepthCodec("16-bit PNG, 256 per metre (KITTI's depth maps, up to 256 m)", "uint16", 256.0,
                              png=True, saturated=65535),
    "raw_f32_m": DepthCodec("raw float32 in metres", "float32", 1.0, png=False),
}

# Units per metre of 16-bit depth files in the wild (--depth-units-per-metre), and whose they are: each
# dataset's own documentation (TUM RGB-D's file formats page, ICL-NUIM's, KITTI's devkit readme) and, for
# Kinect v2, the libfreenect2 / ESANet tools that store 0.1 mm.
DEPTH_UNITS = {
    1000.0: "millimetres: NYU Depth V2's PNGs, BTS, most 16-bit depth PNGs (the default)",
    5000.0: "TUM RGB-D and ICL-NUIM",
    10000.0: "0.1 mm: Kinect v2 tools",
    256.0: "KITTI depth maps",
}


def in_range_by_unit(good_m: np.ndarray, codec: DepthCodec, depth_range_m) -> dict[float, int]:
    """{units per metre: how many of the valid depths good_m (metres, as read with `codec`) lie in depth_range_m =
    (min, max) metres when read at that unit}, for codec's own unit and, for 16-bit depth, each of DEPTH_UNITS."""
    lo, hi = depth_range_m
    units = [codec.units_per_metre, *(DEPTH_UNITS if codec.units_vary else ())]
    counts = {}
    for u in units:
        as_read = good_m * (codec.units_per_metre / u)
        counts[u] = int(np.count_nonzero((as_read >= lo) & (as_read <= hi)))
    return counts
