"""The Keras callbacks of a training run: atomic checkpoints, a wall-clock budget, skipped-frame reports and
TensorBoard depth maps, assembled by `make_callbacks` in the order train.py relies on."""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from depth import DepthScale, unpack_target
from figures import colorize


class PromoteCheckpoint(keras.callbacks.Callback):
    """Renames a checkpoint written under a temporary name once it is whole, so a run killed while
    saving never leaves a half-written best.keras or last.keras (os.replace is atomic)."""

    def __init__(self, partial: Path, final: Path):
        super().__init__()
        self.partial, self.final = partial, final

    def on_epoch_end(self, epoch, logs=None):
        if self.partial.exists():
            os.replace(self.partial, self.final)


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `minutes` of wall-clock time have passed since training began."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = 60.0 * minutes

    def on_train_begin(self, logs=None):
        self.start = getattr(self, "start", time.monotonic())  # once: the budget spans every fit phase

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.start > self.seconds:
            if not self.model.stop_training:
                print(f"\ntime budget of {self.seconds / 60:g} min reached: finishing this epoch", file=sys.stderr)
            self.model.stop_training = True


class SkippedFrames(keras.callbacks.Callback):
    """Says at the end of each epoch how many unreadable frames were skipped (each was named as it happened)."""

    def __init__(self, splits):
        super().__init__()
        self.splits = [s for s in splits if s is not None]

    def on_epoch_end(self, epoch, logs=None):
        for split in self.splits:
            if skipped := split.take_skipped():
                print(f"\nwarning: epoch {epoch + 1}: skipped {len(skipped)} unreadable frame(s) of "
                      f"{split.source} [{split.name}], e.g. {skipped[0]}", file=sys.stderr)


class DepthMaps(keras.callbacks.Callback):
    """Logs RGB | ground truth | prediction of a few validation frames to TensorBoard after every epoch."""

    def __init__(self, log_dir: Path, rgb, y_true, depth_scale: DepthScale):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.rgb, self.y_true, self.depth_scale = rgb, y_true, depth_scale

    def on_epoch_end(self, epoch, logs=None):
        target, mask = unpack_target(self.y_true)
        scale = self.depth_scale
        gt = np.where(mask[..., 0] > 0, scale.decode(target[..., 0]), np.nan)  # holes in grey, as in every figure
        pred = scale.decode(self.model(self.rgb, training=False)[..., 0])
        lo, hi = scale.min_depth_m, scale.max_depth_m
        panels = [tf.image.resize(self.rgb, gt.shape[1:3]).numpy(), colorize(gt, lo, hi), colorize(pred, lo, hi)]
        with self.writer.as_default():
            tf.summary.image("validation: rgb | ground truth | prediction", np.concatenate(panels, axis=2),
                             step=epoch, max_outputs=len(self.rgb))
        self.writer.flush()


def _best_val_loss(history_csv: Path) -> float | None:
    """The lowest val_loss an interrupted run already logged, so a resumed run keeps its best checkpoint."""
    if not history_csv.exists():
        return None
    with open(history_csv) as f:
        losses = [float(row["val_loss"]) for row in csv.DictReader(f) if row.get("val_loss")]
    return min(losses, default=None)


def make_callbacks(run_dir: Path, val, val_split, train_split, depth_scale, tb_images: int, time_budget) -> list:
    """The run's callbacks, in the order they must run: the time budget, the backup --resume continues from,
    last and best checkpoints (each promoted once whole), history.csv, TensorBoard, skipped-frame reports and
    `tb_images` validation depth maps. val: the validation dataset or None (then "best" monitors the loss);
    time_budget: minutes or None."""
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    monitor = "val_loss" if val is not None else "loss"
    callbacks = [
        # first, so an epoch counts as done only once its backup is written
        # kept after a fit ends, so a run of two phases (--freeze-encoder-epochs) resumes in either
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(str(ckpt / "last.partial.keras")),
        PromoteCheckpoint(ckpt / "last.partial.keras", ckpt / "last.keras"),
        keras.callbacks.ModelCheckpoint(str(ckpt / "best.partial.keras"), monitor=monitor, save_best_only=True,
                                        initial_value_threshold=_best_val_loss(run_dir / "history.csv")),
        PromoteCheckpoint(ckpt / "best.partial.keras", ckpt / "best.keras"),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "logs")),
        SkippedFrames([train_split, val_split]),
    ]
    if time_budget is not None:
        callbacks.insert(0, TimeBudget(time_budget))
    if val is not None and tb_images > 0:
        rgb, y_true = next(iter(val.unbatch().batch(tb_images)))
        callbacks.append(DepthMaps(run_dir / "logs" / "depth_maps", rgb, y_true, depth_scale))
    return callbacks
