"""What the chief does at the end of every epoch, as Keras callbacks (driven by loop.py through a CallbackList):
history.csv and the checkpoints, each written whole, TensorBoard scalars and depth maps, skipped-frame reports;
assembled by `make_callbacks` in the order train.py relies on."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from depth import DepthScale, unpack_target
from figures import colorize
from rundir import write_history, write_whole


class SkippedFrames(keras.callbacks.Callback):
    """Says at the end of each epoch how many unreadable frames of each split of `mixtures` (mixtures.Mixture, or
    None) its pipelines skipped (each was named as it happened), emptying the mixtures' logs."""

    def __init__(self, mixtures):
        super().__init__()
        self.logs = [pair for m in mixtures if m is not None for pair in zip(m.splits, m.skipped)]  # (split, log)

    def on_epoch_end(self, epoch, logs=None):
        for split, skip_log in self.logs:
            if skipped := skip_log.take():
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


class History(keras.callbacks.Callback):
    """history.csv: the rows of earlier epochs (a resumed run's, at most up to its backup) and one row per epoch
    since, the whole file rewritten at every epoch's end (rundir.write_history)."""

    def __init__(self, path: Path, rows: list[dict]):
        super().__init__()
        self.path, self.rows = path, list(rows)

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch, **logs})
        write_history(self.path, self.rows)


class Checkpoints(keras.callbacks.Callback):
    """checkpoints/last.keras after every epoch and checkpoints/best.keras when `monitor` is lowest so far
    (`best`: the lowest of earlier epochs, or None), each written whole, compiled with its optimizer."""

    def __init__(self, directory: Path, monitor: str, best: float | None):
        super().__init__()
        self.directory, self.monitor, self.best = directory, monitor, best

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        last = self.directory / "last.keras"
        write_whole(last, self.model.save)
        value = logs[self.monitor]
        if self.best is None or value < self.best:
            self.best = value
            # the same model, so the same file: copied, not serialised again (Keras's save is the slow part)
            write_whole(self.directory / "best.keras", lambda partial: shutil.copyfile(last, partial))


class Scalars(keras.callbacks.Callback):
    """TensorBoard scalars per epoch, as Keras's TensorBoard callback names them: logs/train and logs/validation,
    tags epoch_<name> (val_ dropped)."""

    def __init__(self, log_dir: Path):
        super().__init__()
        self.writers = {kind: tf.summary.create_file_writer(str(log_dir / kind)) for kind in ("train", "validation")}

    def on_epoch_end(self, epoch, logs=None):
        for kind, writer in self.writers.items():
            with writer.as_default():
                for name, value in logs.items():
                    if name.startswith("val_") == (kind == "validation"):
                        tf.summary.scalar(f"epoch_{name.removeprefix('val_')}", value, step=epoch)
            writer.flush()


def monitored(val) -> str:
    """What best.keras is chosen by: the validation loss, or the training loss without validation."""
    return "val_loss" if val is not None else "loss"


def make_callbacks(run_dir: Path, history: list[dict], train, val, depth_scale, *, tb_images: int, val_maps) -> list:
    """The chief's end-of-epoch callbacks, in the order they must run: history.csv and the last and best
    checkpoints (so the backup, saved after them, never counts an epoch they lack), TensorBoard scalars,
    skipped-frame reports of every split of `train` and `val` (the run's mixtures.Mixture; val None without
    validation, and then "best" monitors the training loss) and `tb_images` validation depth maps, taken from
    `val_maps` (one device's batches of the validation set, built only when depth maps are logged; else None).
    history: the rows of completed epochs (rundir.read_history)."""
    monitor = monitored(val)
    best = min((row[monitor] for row in history if monitor in row), default=None)
    callbacks = [
        History(run_dir / "history.csv", history),
        Checkpoints(run_dir / "checkpoints", monitor, best),
        Scalars(run_dir / "logs"),
        SkippedFrames([train, val]),
    ]
    if val_maps is not None:
        rgb, y_true = next(iter(val_maps.unbatch().batch(tb_images)))
        callbacks.append(DepthMaps(run_dir / "logs" / "depth_maps", rgb, y_true, depth_scale))
    return callbacks
