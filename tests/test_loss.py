"""Known answers for the loss terms, the depth error metrics and the totals train.py's loop logs."""
import math

import numpy as np
import pytest
import tensorflow as tf

from depth import DepthScale, pack_target
from loss import batch_totals, depth_errors, depth_loss, logs_from_totals, loss_terms

MAX_VAL = DepthScale().value_range[1]  # 100: inverse depth over 0.1-10 m


def random_maps(seed=0, shape=(2, 16, 16, 1)):
    """Encoded depth in [1, 100] and a mask with about a quarter of the pixels invalid, both `shape`."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(1.0, MAX_VAL, shape).astype("float32")
    mask = (rng.uniform(size=shape) > 0.25).astype("float32")
    return depth, mask


def terms(y_true, y_pred, mask):
    return {k: float(v) for k, v in loss_terms(y_true, y_pred, mask, MAX_VAL).items()}


def test_identical_maps_give_zero_loss():
    depth, mask = random_maps()
    t = terms(depth, depth, mask)
    assert t == pytest.approx({"l1": 0.0, "grad": 0.0, "ssim": 0.0}, abs=1e-6)
    assert float(depth_loss(depth, depth, mask)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("full_mask", [True, False])
def test_constant_shift_on_valid_pixels(full_mask):
    depth, mask = random_maps()
    if full_mask:
        mask = np.ones_like(mask)
    c = 3.5
    t = terms(depth, depth + c, mask)
    assert t["l1"] == pytest.approx(c, rel=1e-5)  # |y - (y + c)| = c at every valid pixel
    assert t["grad"] == pytest.approx(0.0, abs=1e-4)  # a constant has no gradient


def test_ramp_gives_its_slope_as_gradient_error():
    depth, mask = random_maps()
    slope = 0.5
    ramp = slope * np.arange(depth.shape[2], dtype="float32")[None, None, :, None]
    # dx differs by the slope at every valid pair, dy by nothing: grad = 0 + slope.
    assert terms(depth, depth + ramp, mask)["grad"] == pytest.approx(slope, rel=1e-4)


def test_shift_under_masked_out_pixels_is_ignored():
    depth, mask = random_maps()
    y_pred = depth + 7.0 * (1.0 - mask)  # wrong only where the ground truth is invalid
    t = terms(depth, y_pred, mask)
    assert t["l1"] == 0.0
    assert t["grad"] == 0.0  # every finite difference touching a hole is excluded


def test_nan_holes_give_finite_loss_and_gradients():
    depth, mask = random_maps()
    y_true = np.where(mask > 0, depth, np.nan).astype("float32")
    y_pred = tf.Variable(depth + 1.0)
    with tf.GradientTape() as tape:
        loss = depth_loss(y_true, y_pred, mask)
    grad = tape.gradient(loss, y_pred)
    assert np.isfinite(float(loss))
    assert np.all(np.isfinite(grad.numpy()))


def test_empty_mask_gives_zero_not_nan():
    depth, _ = random_maps()
    y_pred = tf.Variable(np.flip(depth, axis=1).copy())
    empty = np.zeros_like(depth)
    with tf.GradientTape() as tape:
        loss = depth_loss(depth, y_pred, empty)
    assert terms(depth, y_pred, empty) == pytest.approx({"l1": 0.0, "grad": 0.0, "ssim": 0.0}, abs=1e-6)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.isfinite(tape.gradient(loss, y_pred).numpy()))
    assert all(float(v) == 0.0 for v in depth_errors(depth, depth, empty).values())


def test_ssim_term_is_in_unit_interval():
    depth, mask = random_maps(seed=1)
    other, _ = random_maps(seed=2)
    ssim = terms(depth, other, mask)["ssim"]
    assert 0.0 < ssim <= 1.0
    assert terms(depth, depth, mask)["ssim"] == pytest.approx(0.0, abs=1e-6)


def test_ssim_works_on_images_smaller_than_its_window():
    depth, mask = random_maps(shape=(1, 4, 3, 1))
    assert 0.0 <= terms(depth, depth[:, ::-1], mask)["ssim"] <= 1.0


# Three valid pixels: gt 1, 2, 4 m against predictions 1, 3, 2 m. The fourth pixel (gt 8, pred 5)
# is masked out, or has gt 0 and no mask: either way it must not count.
PRED = np.array([[1.0, 3.0], [2.0, 5.0]])
MASKED_CASES = [
    (np.array([[1.0, 2.0], [4.0, 8.0]]), np.array([[True, True], [True, False]])),
    (np.array([[1.0, 2.0], [4.0, 0.0]]), None),
]


@pytest.mark.parametrize("gt, mask", MASKED_CASES)
def test_depth_errors_by_hand(gt, mask):
    expected = {
        # max(gt/pred, pred/gt) = 1, 1.5, 2 against 1.25, 1.5625, 1.953125
        "delta1": 1 / 3,
        "delta2": 2 / 3,
        "delta3": 2 / 3,
        "abs_rel": (0 / 1 + 1 / 2 + 2 / 4) / 3,  # = 1/3
        "sq_rel": (0 / 1 + 1 / 2 + 4 / 4) / 3,  # = 1/2
        "rmse": math.sqrt((0 + 1 + 4) / 3),
        "rmse_log": math.sqrt((0 + math.log(2 / 3) ** 2 + math.log(4 / 2) ** 2) / 3),
        "log10": (0 + abs(math.log10(2 / 3)) + math.log10(4 / 2)) / 3,  # = log10(3)/3
    }
    errors = {k: float(v) for k, v in depth_errors(gt, PRED, mask).items()}
    assert errors == pytest.approx(expected, rel=1e-6)


def test_depth_errors_argument_order_matters():
    gt, mask = MASKED_CASES[0]
    # Swapped, the denominators are the predictions 1, 3, 2: (0/1 + 1/3 + 2/2) / 3 = 4/9, not 1/3.
    assert float(depth_errors(gt, PRED, mask)["abs_rel"]) == pytest.approx(1 / 3)
    assert float(depth_errors(PRED, gt, mask)["abs_rel"]) == pytest.approx(4 / 9)


def test_delta1_threshold_on_a_batch_of_tensors():
    gt = tf.random.uniform((2, 8, 8, 1), 0.5, 10.0, seed=3)
    assert float(depth_errors(gt, 1.3 * gt)["delta1"]) == 0.0
    assert float(depth_errors(gt, 1.2 * gt)["delta1"]) == 1.0
    assert float(depth_errors(gt, gt / 1.2)["delta1"]) == 1.0


def test_logged_values_are_the_pure_functions_of_the_batch_however_split():
    """What train.py's loop logs (batch_totals of each half, added, then logs_from_totals) is depth_loss and
    depth_errors of the whole batch: the loss in encoded units, delta1 and abs_rel in metres after decoding."""
    scale = DepthScale("inverse", 0.1, 10.0)
    rng = np.random.default_rng(6)
    depth_m = rng.uniform(0.5, 7.5, (4, 16, 16, 1)).astype("float32")  # predictions stay inside 0.1-10 m
    mask = rng.uniform(size=depth_m.shape) > 0.2
    pred_m = depth_m * rng.uniform(0.8, 1.3, depth_m.shape).astype("float32")
    target, y_pred = scale.encode(depth_m), scale.encode(pred_m)
    halves = [batch_totals(pack_target(target[k:k + 2], mask[k:k + 2]), y_pred[k:k + 2], scale) for k in (0, 2)]
    logs = logs_from_totals({key: halves[0][key] + halves[1][key] for key in halves[0]}, theta=0.1)
    errors = depth_errors(depth_m, pred_m, mask)
    assert set(logs) == {"loss", "l1", "grad", "ssim", "delta1", "abs_rel"}
    assert logs["loss"] == pytest.approx(float(depth_loss(target, y_pred, mask, theta=0.1, max_val=100.0)), rel=1e-5)
    assert logs["delta1"] == pytest.approx(float(errors["delta1"]), rel=1e-5)
    assert logs["abs_rel"] == pytest.approx(float(errors["abs_rel"]), rel=1e-5)
