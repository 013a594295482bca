"""depth.py: the DepthScale round trip and range (DenseDepth's inverse depth, plain metres), and packed targets."""
import numpy as np
import pytest
import tensorflow as tf

from depth import DepthScale, pack_target, unpack_target


def test_depth_scale_inverse_roundtrip_and_range():
    scale = DepthScale()
    depth = tf.constant([0.05, 0.1, 1.0, 2.5, 10.0, 12.0])
    np.testing.assert_allclose(scale.encode(depth), [100, 100, 10, 4, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(scale.decode(scale.encode(depth)), [0.1, 0.1, 1.0, 2.5, 10.0, 10.0], rtol=1e-6)
    assert scale.value_range == (1.0, 100.0)
    metres = DepthScale("metres", 0.5, 8.0)
    assert metres.value_range == (0.5, 8.0)
    np.testing.assert_allclose(metres.decode(metres.encode(depth)), [0.5, 0.5, 1.0, 2.5, 8.0, 8.0], rtol=1e-6)
    with pytest.raises(ValueError, match="depth mode"):
        DepthScale("log")


def test_packed_target_carries_the_mask_as_its_second_channel():
    target, mask = np.full((1, 2, 3, 1), 4.0), np.array([[[1], [0], [1]], [[0], [0], [1]]], np.float32)[None]
    y_true = pack_target(target, mask)
    assert y_true.shape == (1, 2, 3, 2)
    got_target, got_mask = unpack_target(y_true)
    np.testing.assert_array_equal(got_target, target)
    np.testing.assert_array_equal(got_mask, mask)


def test_depth_scale_config_rebuilds_it():
    scale = DepthScale("metres", 0.5, 8.0)
    assert scale.to_config() == {"mode": "metres", "min_depth_m": 0.5, "max_depth_m": 8.0}
    assert DepthScale(**scale.to_config()) == scale
    with pytest.raises(ValueError, match="0 < min < max"):
        DepthScale("inverse", 5.0, 1.0)
