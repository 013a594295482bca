"""nyu.py's depth-file codecs: metres in, the stored values out, and back, with known answers."""
import io

import numpy as np
import pytest
from PIL import Image

from nyu import DEPTH_CODECS


def test_millimetre_png_rounds_clips_and_marks_invalid_as_zero():
    mm = DEPTH_CODECS["png16_mm"]
    depth_m = np.array([[1.2344, 1.2346, 70.0], [0.0, np.nan, -3.0]])
    np.testing.assert_array_equal(mm.from_metres(depth_m), [[1234, 1235, 65535], [0, 0, 0]])
    assert mm.from_metres(depth_m).dtype == np.uint16 and mm.max_depth_m == pytest.approx(65.535)
    stored = np.asarray(Image.open(io.BytesIO(mm.png_bytes(depth_m))))
    assert stored.dtype == np.uint16  # a 16-bit greyscale PNG, as NYU's and BTS's
    # 70 m does not fit: stored as 65535, the saturation value, which reads back as no depth.
    np.testing.assert_allclose(mm.to_metres(stored), [[1.234, 1.235, 0], [0, 0, 0]], atol=1e-6)


def test_16_bit_depth_read_at_other_units_with_65535_as_no_depth():
    mm = DEPTH_CODECS["png16_mm"]
    tum, kinect2 = mm.with_units(5000), mm.with_units(10000)
    np.testing.assert_allclose(tum.to_metres([5000, 12345, 0, 65535]), [1.0, 2.469, 0, 0], atol=1e-6)
    np.testing.assert_allclose(kinect2.to_metres([10000, 65534, 65535]), [1.0, 6.5534, 0], atol=1e-6)
    assert tum.description == "16-bit PNG, 5000 per metre" and kinect2.max_depth_m == pytest.approx(6.5535)
    np.testing.assert_array_equal(tum.from_metres([1.0, 0.00009]), [5000, 0])  # 0.45 units rounds to 0
    assert mm.with_units(1000) is mm
    with pytest.raises(ValueError, match="fixed unit"):
        DEPTH_CODECS["png8_10m"].with_units(5000)


def test_densedepth_8bit_png_is_255_for_10_m():
    png8 = DEPTH_CODECS["png8_10m"]
    np.testing.assert_array_equal(png8.from_metres([10.0, 5.0, 0.2, 12.0]), [255, 128, 5, 255])
    stored = np.asarray(Image.open(io.BytesIO(png8.png_bytes(np.full((2, 3), 10.0)))))
    assert stored.dtype == np.uint8 and (stored == 255).all()
    assert png8.to_metres([255])[0] == pytest.approx(10.0) and png8.max_depth_m == pytest.approx(10.0)


def test_raw_float_metres_are_kept_exactly_except_invalid():
    raw = DEPTH_CODECS["raw_f32_m"]
    np.testing.assert_array_equal(raw.from_metres([1.25, np.inf, -1.0]), np.array([1.25, 0, 0], np.float32))
    assert raw.max_depth_m == np.inf
    with pytest.raises(ValueError, match="not a PNG format"):
        raw.png_bytes(np.ones((2, 2)))
