"""The training loss (DenseDepth's theta * L_depth + L_grad + L_SSIM) and the depth error metrics.

Loss terms work on the network's encoded depth (see `depth.DepthScale`); error metrics work in metres.
Every term is a pure function of (y_true, y_pred, mask). train.py's loop (loop.py) trains on `loss_parts`' sums and
counts and logs `batch_totals`, which unpack the mask from y_true's second channel (`depth.pack_target`); no Keras
loss or metric object is needed, so a saved model carries no compile state of this module.
"""
from __future__ import annotations

import math

import tensorflow as tf

from depth import DepthScale, pack_target, unpack_target

DEFAULT_THETA = 0.1  # the L1 term's weight (DenseDepth's, and the seed paper's)
# SSIM's dynamic range for the default scale: 100 for inverse depth over 0.1-10 m (DenseDepth's 1000/10).
DEFAULT_MAX_VAL = DepthScale().value_range[1]
SSIM_FILTER_SIZE = 11  # tf.image.ssim's Gaussian window, shrunk for images smaller than it


def _as_valid(mask):
    """Mask of 0/1 or bools -> bool tensor of the same shape."""
    return tf.cast(mask, tf.float32) > 0.5


def _masked_sum_count(values, valid):
    """(sum of `values` over the True entries of `valid`, their count), both scalars of values' dtype."""
    total = tf.reduce_sum(tf.where(valid, values, tf.zeros_like(values)))
    return total, tf.reduce_sum(tf.cast(valid, values.dtype))


def _fill_holes(y_true, y_pred, valid):
    """Replace invalid targets by the prediction, without gradient, so holes add neither error nor NaN."""
    return tf.where(valid, y_true, tf.stop_gradient(y_pred))


def _prepare(y_true, y_pred, mask):
    """Cast to float32 and fill holes; returns (y_true, y_pred, valid), each [B, h, w, 1]."""
    y_pred = tf.cast(y_pred, tf.float32)
    valid = _as_valid(mask)
    return _fill_holes(tf.cast(y_true, tf.float32), y_pred, valid), y_pred, valid


def loss_parts(y_true, y_pred, mask, max_val):
    """The loss terms as (sums, counts): two dicts keyed "l1", "dy", "dx", "ssim" of float32 scalars.

    y_true, y_pred: encoded depth [B, h, w, 1]; mask: [B, h, w, 1], 1/True where the ground truth is valid
    (invalid targets may hold anything, even NaN). Each term is sums[k] / counts[k] (`terms_from_parts`):
    - l1: |y_true - y_pred| over the valid pixels (L_depth, encoded units);
    - dy, dx: |d y_true - d y_pred| of `tf.image.image_gradients`' forward differences, each counted only where
      both of its pixels are valid (which also drops the zero last row and column); L_grad = dy + dx;
    - ssim: clip((1 - SSIM) / 2, 0, 1) summed over the B images, counted per image (L_SSIM, in [0, 1]). SSIM is
      windowed, so the mask cannot select pixels: invalid targets are replaced by the (stop-gradient)
      prediction first. max_val is its dynamic range (`DepthScale.value_range[1]`); images smaller than the
      11-pixel window use a smaller one.
    Sums and counts, not means, so that replicas can add theirs: dividing each replica's sums by the counts
    summed over all replicas gives, after the gradients are summed, exactly one device's loss on the global
    batch (counts depend on the mask alone, so they can be reduced before the forward pass).
    """
    y_true, y_pred, valid = _prepare(y_true, y_pred, mask)
    dy_true, dx_true = tf.image.image_gradients(y_true)
    dy_pred, dx_pred = tf.image.image_gradients(y_pred)
    valid_dy, valid_dx = _valid_differences(valid)
    static_hw = [d for d in y_pred.shape[-3:-1] if d is not None]
    ssim = tf.image.ssim(y_true, y_pred, max_val=max_val, filter_size=min(SSIM_FILTER_SIZE, *static_hw))  # [B]
    sums = {
        "l1": _masked_sum_count(tf.abs(y_true - y_pred), valid)[0],
        "dy": _masked_sum_count(tf.abs(dy_true - dy_pred), valid_dy)[0],
        "dx": _masked_sum_count(tf.abs(dx_true - dx_pred), valid_dx)[0],
        "ssim": tf.reduce_sum(tf.clip_by_value((1.0 - ssim) / 2.0, 0.0, 1.0)),
    }
    return sums, loss_counts(mask)


def _valid_differences(valid):
    """valid [B, h, w, 1] -> (valid_dy, valid_dx): where both pixels of each forward difference are valid;
    valid_dy[i, j] = valid[i, j] and valid[i + 1, j], padded with False in the last row (dx: column)."""
    valid_dy = tf.pad(valid[:, :-1] & valid[:, 1:], [[0, 0], [0, 1], [0, 0], [0, 0]])
    valid_dx = tf.pad(valid[:, :, :-1] & valid[:, :, 1:], [[0, 0], [0, 0], [0, 1], [0, 0]])
    return valid_dy, valid_dx


def loss_counts(mask):
    """The counts of `loss_parts` from the mask [B, h, w, 1] alone: {"l1", "dy", "dx", "ssim"} float32 scalars."""
    valid = _as_valid(mask)
    valid_dy, valid_dx = _valid_differences(valid)
    count = lambda v: tf.reduce_sum(tf.cast(v, tf.float32))  # noqa: E731
    return {"l1": count(valid), "dy": count(valid_dy), "dx": count(valid_dx),
            "ssim": tf.cast(tf.shape(valid)[0], tf.float32)}


def terms_from_parts(sums, counts):
    """`loss_parts`' sums and counts -> the three unweighted terms {"l1", "grad", "ssim"}; 0 where a count is 0."""
    mean = lambda k: tf.math.divide_no_nan(sums[k], counts[k])  # noqa: E731
    return {"l1": mean("l1"), "grad": mean("dy") + mean("dx"), "ssim": mean("ssim")}


def weighted_loss(terms, theta=DEFAULT_THETA):
    """theta * L_depth + L_grad + L_SSIM (DenseDepth) from `terms_from_parts`' terms."""
    return theta * terms["l1"] + terms["grad"] + terms["ssim"]


def loss_terms(y_true, y_pred, mask, max_val):
    """The three unweighted loss terms {"l1", "grad", "ssim"} of one batch as scalars (see `loss_parts`).

    y_true, y_pred: encoded depth [B, h, w, 1]; mask: [B, h, w, 1] of 0/1 or bools. Each is 0 for an empty mask.
    """
    return terms_from_parts(*loss_parts(y_true, y_pred, mask, max_val))


def depth_loss(y_true, y_pred, mask, theta=DEFAULT_THETA, max_val=DEFAULT_MAX_VAL):
    """theta * L_depth + L_grad + L_SSIM (DenseDepth), a scalar; shapes as in `loss_terms`."""
    return weighted_loss(loss_terms(y_true, y_pred, mask, max_val), theta)


ERROR_METRICS = ("delta1", "delta2", "delta3", "abs_rel", "sq_rel", "rmse", "rmse_log", "log10")  # depth_errors' keys
_ROOTED = {"rmse": "se", "rmse_log": "se_log"}  # metrics that are the square root of a mean: rmse = sqrt(mean se)


def depth_error_sums(gt_m, pred_m, mask=None):
    """The sums behind `depth_errors` and their pixel count: {"count", "delta1", "delta2", "delta3", "abs_rel",
    "sq_rel", "se", "se_log", "log10"}, each summed over the valid pixels (se: squared error in m^2, se_log:
    squared log error), so that batches and replicas can be pooled by adding them. Arguments as `depth_errors`."""
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
    per_pixel = {f"delta{k}": tf.cast(ratio < 1.25**k, dtype) for k in (1, 2, 3)}
    per_pixel.update(abs_rel=tf.abs(err) / gt, sq_rel=tf.square(err) / gt, se=tf.square(err),
                     se_log=tf.square(log_err), log10=tf.abs(log_err) / math.log(10.0))
    sums = {key: _masked_sum_count(values, valid)[0] for key, values in per_pixel.items()}
    return {"count": tf.reduce_sum(tf.cast(valid, dtype)), **sums}


def errors_from_sums(sums, names=ERROR_METRICS):
    """`depth_error_sums` (possibly added up over batches) -> {name: metric} for `names`; 0 when count is 0."""
    mean = lambda key: tf.math.divide_no_nan(sums[key], sums["count"])  # noqa: E731
    return {name: tf.sqrt(mean(_ROOTED[name])) if name in _ROOTED else mean(name) for name in names}


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
    return errors_from_sums(depth_error_sums(gt_m, pred_m, mask))


# ---------------------------------------------------------------------------
# What training logs: sums and counts of a batch, pooled over replicas and steps
# ---------------------------------------------------------------------------

LOGGED_ERRORS = ("delta1", "abs_rel")  # the depth errors training logs beside the loss and its terms


def batch_totals(y_true, y_pred, depth_scale):
    """The additive totals of one batch: {"loss/<term>", "loss_count/<term>" (loss_parts), "error/<key>"
    (depth_error_sums in metres)}, float32 scalars. y_true: packed [B, h, w, 2] (depth.pack_target); y_pred:
    encoded [B, h, w, 1]. Totals of replicas and steps add up; `logs_from_totals` turns them into logged values."""
    target, mask = unpack_target(y_true)
    sums, counts = loss_parts(target, y_pred, mask, depth_scale.value_range[1])
    errors = depth_error_sums(depth_scale.decode(target), depth_scale.decode(y_pred), mask)
    return {**{f"loss/{k}": v for k, v in sums.items()}, **{f"loss_count/{k}": v for k, v in counts.items()},
            **{f"error/{k}": tf.cast(v, tf.float32) for k, v in errors.items()}}


def zero_totals() -> dict:
    """batch_totals' structure with every total 0 (float32 scalars): where a sum over batches starts. The keys are
    batch_totals' own, from one 4x4 frame run eagerly (milliseconds)."""
    y_true = pack_target(tf.ones([1, 4, 4, 1]), tf.ones([1, 4, 4, 1]))
    return {k: tf.zeros_like(v) for k, v in batch_totals(y_true, tf.ones([1, 4, 4, 1]), DepthScale()).items()}


def logs_from_totals(totals, theta):
    """`batch_totals` added up over any number of batches and replicas -> {"loss", "l1", "grad", "ssim",
    "delta1", "abs_rel"} as Python floats: the values of one device on all those frames pooled as one batch."""
    part = lambda prefix: {k.split("/", 1)[1]: v for k, v in totals.items() if k.startswith(prefix)}  # noqa: E731
    terms = terms_from_parts(part("loss/"), part("loss_count/"))
    logs = {"loss": weighted_loss(terms, theta), **terms, **errors_from_sums(part("error/"), LOGGED_ERRORS)}
    return {k: float(v) for k, v in logs.items()}
