"""The NYU Depth V2 evaluation protocol for one image, as evaluate.py scores every image of a split: where a
prediction is scored (the crop, `frame_crop`, and the pixels whose ground truth is in the model's depth range,
`valid_mask`), the errors there (`compute_errors`, loss.depth_errors with ground truth first) and the per-image
alignments that may come first (DenseDepth's `median_scaled`, MiDaS's `scale_shift_aligned`). Depth is in metres,
arrays are numpy [H, W].
"""
from __future__ import annotations

import numpy as np

import nyu
from depth import DepthScale
from layouts import DataError
from loss import depth_errors

NYU_FRAME_TEXT = f"{nyu.FRAME_HW[0]}x{nyu.FRAME_HW[1]}"
CROP_CHOICES = {
    "auto": f"the data's own crop (eigen_test_crop.npy) if it ships one, else eigen for {NYU_FRAME_TEXT} frames, "
            "else none",
    **{name: f"{crop.whose}, {nyu.box_text(crop.box)} ({NYU_FRAME_TEXT} frames only)" for name, crop in nyu.CROPS.items()},
    "none": "the whole frame",
}


def compute_errors(gt, pred, mask=None) -> dict[str, float]:
    """`loss.depth_errors` as Python floats: gt and pred [...] in metres (ground truth FIRST, the denominator
    of the relative errors), mask the same shape (True = scored). Keys: ERROR_METRICS."""
    return {name: float(value) for name, value in depth_errors(gt, pred, mask).items()}


def frame_crop(choice: str, hw, data_crop=None) -> tuple[tuple | None, str]:
    """(box, label): the crop (top, bottom, left, right, inclusive) a frame of size hw = (H, W) is scored in,
    None for the whole frame, and a label saying which. choice: a key of CROP_CHOICES; data_crop: the
    split's own crop (Split.crop). The NYU crops (nyu.CROPS) are refused for frames of another size."""
    nyu_frame = tuple(hw) == nyu.FRAME_HW
    if choice == "auto":
        if data_crop is not None:
            return tuple(data_crop), f"the data's own ({nyu.box_text(data_crop)})"
        choice = "eigen" if nyu_frame else "none"
    if choice == "none":
        return None, "none (whole frame)"
    if not nyu_frame:
        raise DataError(f"--crop {choice} is defined for {NYU_FRAME_TEXT} NYU frames, not {hw[0]}x{hw[1]}; "
                        "use --crop auto or none")
    crop = nyu.CROPS[choice]
    return crop.box, f"{choice}: {crop.whose} ({nyu.box_text(crop.box)})"


def crop_mask(hw, box=None) -> np.ndarray:
    """bool [H, W]: True inside box = (top, bottom, left, right), all inclusive; everywhere for None."""
    mask = np.zeros(hw, bool)
    top, bottom, left, right = box if box is not None else (0, hw[0] - 1, 0, hw[1] - 1)
    mask[top:bottom + 1, left:right + 1] = True
    return mask


def valid_mask(gt_m: np.ndarray, depth_scale: DepthScale, box=None) -> np.ndarray:
    """bool [H, W]: the scored pixels, inside the crop where the ground truth [H, W] (metres) is within
    [depth_scale.min_depth_m, depth_scale.max_depth_m]."""
    in_range = (gt_m >= depth_scale.min_depth_m) & (gt_m <= depth_scale.max_depth_m)
    return in_range & crop_mask(gt_m.shape, box)


def median_scaled(gt_m: np.ndarray, pred_m: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """pred * median(gt) / median(pred) over the valid pixels (DenseDepth's per-image median scaling), unclipped."""
    return pred_m * (np.median(gt_m[valid]) / np.median(pred_m[valid]))


def scale_shift_aligned(gt_m: np.ndarray, pred_m: np.ndarray, valid: np.ndarray, depth_scale: DepthScale) -> np.ndarray:
    """pred [H, W] metres aligned per image in inverse depth, as MiDaS (Ranftl et al. 2020) and Marigold score
    relative depth: s, t minimise the sum over the valid pixels of (s / pred + t - 1 / gt)^2 (least squares), and
    the result is 1 / (s / pred + t), clipped to [depth_scale.min_depth_m, max_depth_m] (an aligned inverse depth
    at or below 1 / max_depth_m, at or past the far limit, becomes max_depth_m)."""
    inverse_pred = 1.0 / pred_m.astype(np.float64)
    design = np.stack([inverse_pred[valid], np.ones(int(valid.sum()))], axis=1)
    (s, t), *_ = np.linalg.lstsq(design, 1.0 / gt_m[valid].astype(np.float64), rcond=None)
    aligned = np.maximum(s * inverse_pred + t, 1.0 / depth_scale.max_depth_m)
    return np.clip(1.0 / aligned, depth_scale.min_depth_m, depth_scale.max_depth_m).astype(np.float32)
