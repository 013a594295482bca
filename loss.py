"""The training loss (DenseDepth's theta * L_depth + L_grad + L_SSIM) and the depth error metrics.

Loss terms work on the network's encoded depth (see `depth.DepthScale`); error metrics work in metres.
Every term is a pure function of (y_true, y_pred, mask); Keras sees them through `DepthLoss` and
`loss_metrics`, which unpack the mask from y_true's second channel (`depth.pack_target`).
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from depth import DepthScale, unpack_target

DEFAULT_THETA = 0.1  # the L1 term's weight (DenseDepth's, and the seed paper's)
# SSIM's dynamic range for the default scale: 100 for inverse depth over 0.1-10 m (DenseDepth's 1000/10).
DEFAULT_MAX_VAL = DepthScale().value_range[1]
SSIM_FILTER_SIZE = 11  # tf.image.ssim's Gaussian window, shrunk for images smaller than it


def _as_valid(mask):
    """Mask of 0/1 or bools -> bool tensor of the same shape."""
    return tf.cast(mask, tf.float32) > 0.5


def _masked_mean(values, valid):
    """Mean of `values` over the True entries of `valid` (same shape); 0, not NaN, when none are."""
    total = tf.reduce_sum(tf.where(valid, values, tf.zeros_like(values)))
    count = tf.reduce_sum(tf.cast(valid, values.dtype))
    return tf.math.divide_no_nan(total, count)


def _fill_holes(y_true, y_pred, valid):
    """Replace invalid targets by the prediction, without gradient, so holes add neither error nor NaN."""
    return tf.where(valid, y_true, tf.stop_gradient(y_pred))


def _prepare(y_true, y_pred, mask):
    """Cast to float32 and fill holes; returns (y_true, y_pred, valid), each [B, h, w, 1]."""
    y_pred = tf.cast(y_pred, tf.float32)
    valid = _as_valid(mask)
    return _fill_holes(tf.cast(y_true, tf.float32), y_pred, valid), y_pred, valid


def l1_term(y_true, y_pred, mask):
    """L_depth: mean |y_true - y_pred| over valid pixels of the batch, in encoded units.

    y_true, y_pred, mask: [B, h, w, 1]; mask is 1/True where the ground truth is valid
    (invalid targets may hold anything, even NaN). Returns a scalar, 0 for an empty mask.
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mask)
    return _masked_mean(tf.abs(y_true - y_pred), valid)


def gradient_term(y_true, y_pred, mask):
    """L_grad: mean |dy_true - dy_pred| + mean |dx_true - dx_pred|, in encoded units per pixel.

    Gradients are `tf.image.image_gradients` forward differences; each one counts only where both
    of its pixels are valid, which also drops the zero last row (dy) and last column (dx).
    Shapes as in `l1_term`; returns a scalar, 0 for an empty mask.
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mask)
    dy_true, dx_true = tf.image.image_gradients(y_true)
    dy_pred, dx_pred = tf.image.image_gradients(y_pred)
    # valid_dy[i, j] = valid[i, j] and valid[i + 1, j]; the padding is the last row with no neighbour.
    valid_dy = tf.pad(valid[:, :-1] & valid[:, 1:], [[0, 0], [0, 1], [0, 0], [0, 0]])
    valid_dx = tf.pad(valid[:, :, :-1] & valid[:, :, 1:], [[0, 0], [0, 0], [0, 1], [0, 0]])
    return _masked_mean(tf.abs(dy_true - dy_pred), valid_dy) + _masked_mean(tf.abs(dx_true - dx_pred), valid_dx)


def ssim_term(y_true, y_pred, mask, max_val):
    """L_SSIM: batch mean of clip((1 - SSIM) / 2, 0, 1), in [0, 1].

    SSIM is windowed, so the mask cannot select pixels: invalid targets are replaced by the
    (stop-gradient) prediction first. max_val is the encoded dynamic range's upper end
    (`DepthScale.value_range[1]`). Shapes as in `l1_term`; h and w should be static, or the
    default 11-pixel window is used.
    """
    y_true, y_pred, _ = _prepare(y_true, y_pred, mask)
    static_hw = [d for d in y_pred.shape[-3:-1] if d is not None]
    filter_size = min(SSIM_FILTER_SIZE, *static_hw)
    ssim = tf.image.ssim(y_true, y_pred, max_val=max_val, filter_size=filter_size)  # [B]
    return tf.reduce_mean(tf.clip_by_value((1.0 - ssim) / 2.0, 0.0, 1.0))


def loss_terms(y_true, y_pred, mask, max_val):
    """The three unweighted loss terms {"l1", "grad", "ssim"} as scalars (see the *_term functions).

    y_true, y_pred: encoded depth [B, h, w, 1]; mask: [B, h, w, 1] of 0/1 or bools.
    """
    return {
        "l1": l1_term(y_true, y_pred, mask),
        "grad": gradient_term(y_true, y_pred, mask),
        "ssim": ssim_term(y_true, y_pred, mask, max_val),
    }


def depth_loss(y_true, y_pred, mask, theta=DEFAULT_THETA, max_val=DEFAULT_MAX_VAL):
    """theta * L_depth + L_grad + L_SSIM (DenseDepth), a scalar; shapes as in `loss_terms`."""
    terms = loss_terms(y_true, y_pred, mask, max_val)
    return theta * terms["l1"] + terms["grad"] + terms["ssim"]


@keras.saving.register_keras_serializable(package="depth")
class DepthLoss(keras.losses.Loss):
    """Keras wrapper of `depth_loss` for y_true packed as [B, h, w, 2] = (encoded depth, mask).

    Args:
        theta: weight of the L1 term.
        max_val: SSIM's dynamic range, `DepthScale.value_range[1]` of the scale the targets use.
    """

    def __init__(self, theta=DEFAULT_THETA, max_val=DEFAULT_MAX_VAL, name="depth_loss", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.theta = float(theta)
        self.max_val = float(max_val)

    def call(self, y_true, y_pred):
        target, mask = unpack_target(y_true)
        return depth_loss(target, y_pred, mask, theta=self.theta, max_val=self.max_val)

    def get_config(self):
        return {**super().get_config(), "theta": self.theta, "max_val": self.max_val}


ERROR_METRICS = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")  # depth_errors' keys


def depth_errors(gt_m, pred_m, mask=None):
    """Standard depth error metrics in metres, pooled over all valid pixels.

    gt_m: ground-truth depth in metres (FIRST: it is the denominator of the relative errors);
    pred_m: predicted depth in metres, same shape; mask: optional, same shape, 1/True where valid.
    Any shape (one image or a batch), numpy arrays or tensors. Pixels count where the mask holds
    and gt_m > 0. Returns a dict of scalar tensors: delta1, delta2, delta3 (fraction with
    max(gt/pred, pred/gt) < 1.25, 1.25^2, 1.25^3), abs_rel, sq_rel (metres), rmse (metres),
    rmse_log, log10. Float64 inputs are kept in float64; everything else is computed in float32.
    All are 0 when no pixel is valid.
    """
    gt = tf.convert_to_tensor(gt_m)
    dtype = gt.dtype if gt.dtype.is_floating else tf.float32
    gt = tf.cast(gt, dtype)
    pred = tf.cast(pred_m, dtype)
    valid = gt > 0
    if mask is not None:
        valid &= _as_valid(mask)

    ratio = tf.maximum(gt / pred, pred / gt)
    err = gt - pred
    log_err = tf.math.log(gt) - tf.math.log(pred)
    errors = {f"delta{k}": _masked_mean(tf.cast(ratio < 1.25**k, dtype), valid) for k in (1, 2, 3)}
    errors.update(
        abs_rel=_masked_mean(tf.abs(err) / gt, valid),
        sq_rel=_masked_mean(tf.square(err) / gt, valid),
        rmse=tf.sqrt(_masked_mean(tf.square(err), valid)),
        rmse_log=tf.sqrt(_masked_mean(tf.square(log_err), valid)),
        log10=_masked_mean(tf.abs(log_err) / math.log(10.0), valid),
    )
    return errors


def _metres_error(key):
    """(target, y_pred, mask, scale) -> depth_errors(...)[key] after decoding both to metres."""
    return lambda target, y_pred, mask, scale: depth_errors(scale.decode(target), scale.decode(y_pred), mask)[key]


# metric name -> (target, y_pred, mask, DepthScale) -> scalar. Loss terms are in encoded units, errors in metres.
METRICS = {
    "l1": lambda target, y_pred, mask, scale: l1_term(target, y_pred, mask),
    "grad": lambda target, y_pred, mask, scale: gradient_term(target, y_pred, mask),
    "ssim": lambda target, y_pred, mask, scale: ssim_term(target, y_pred, mask, scale.value_range[1]),
    "delta1": _metres_error("delta1"),
    "abs_rel": _metres_error("abs_rel"),
}


@keras.saving.register_keras_serializable(package="depth")
class DepthMetric(keras.metrics.MeanMetricWrapper):
    """One entry of METRICS as a Keras metric on packed y_true [B, h, w, 2], averaged over batches.

    Its config is the metric's name and the DepthScale, so compiled models saved with it reload.
    """

    def __init__(self, name, dtype=None, **depth_scale):
        """name: a key of METRICS; depth_scale: DepthScale's fields (mode, min_depth_m, max_depth_m), its
        defaults where left out."""
        if name not in METRICS:
            raise ValueError(f"unknown depth metric {name!r}; choose one of {sorted(METRICS)}")
        self.depth_scale = DepthScale(**depth_scale)
        super().__init__(fn=self._value, name=name, dtype=dtype)

    def _value(self, y_true, y_pred):
        target, mask = unpack_target(y_true)
        return METRICS[self.name](target, y_pred, mask, self.depth_scale)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, **self.depth_scale.to_config()}


def loss_metrics(depth_scale):
    """Keras metrics for model.compile, one DepthMetric per METRICS entry: "l1", "grad", "ssim" (the
    unweighted loss terms in encoded units, SSIM with depth_scale.value_range[1] as max_val) and
    "delta1", "abs_rel" (`depth_errors` in metres after decoding target and prediction, over the mask).
    """
    return [DepthMetric(name, **depth_scale.to_config()) for name in METRICS]
