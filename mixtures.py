"""A run's data: one dataset, or a mixture of several (`train.py --data A --data B:weight=0.5,units=5000`), each
with its own depth unit and sampling weight, read through data.make_dataset and mixed by tf.data; and the checks
that the data can train before anything is written.

A --data value is PATH, optionally followed by ':' and comma-separated options (DATA_OPTIONS): weight=W (the
dataset's share of the training frames, relative to the others'; default 1) and units=N (its 16-bit depth per
metre, as --depth-units-per-metre for this dataset alone), train=SPLIT and val=SPLIT (this dataset's training and
validation splits, as --train-split and --val-split for it alone; val=none: it gives no validation). Only a last ':' part made of such options is read as
options, so paths holding ':' (tfds:nyu_depth_v2) keep it; a value naming an existing path is always that path.

Training draws every frame from dataset i with probability weight_i / sum(weights) (`choices`: a stateless
stream seeded by --seed, through tf.data's choose_from_datasets, so a resumed run counts the draws before it
instead of making them), each dataset shuffled, augmented and repeated on its own; validation reads each dataset's validation split in turn. One dataset reads exactly as data.make_dataset.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.autograph.experimental import do_not_convert

import data
from decode import blobs
from depth import DepthScale, unpack_target
from layouts import DataError, Split, open_source, positive_float
from splits import SkipLog, nothing_usable

DATA_OPTIONS = {"weight": positive_float, "units": positive_float, "train": str, "val": str}  # --data PATH:weight=W
_OPTIONS = re.compile(r"^(\w+=[^,=:]+)(,\w+=[^,=:]+)*$")


# ---------------------------------------------------------------------------
# --data values
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DataSpec:
    """One --data value: the dataset's path, its sampling weight, its 16-bit depth unit (None: the layout's own,
    or --depth-units-per-metre) and its training and validation split names (None: --train-split, --val-split)."""

    path: str
    weight: float = 1.0
    units_per_metre: float | None = None
    train_split: str | None = None
    val_split: str | None = None


def parse_data_spec(text: str) -> DataSpec:
    """'PATH[:weight=W][,units=N][,train=SPLIT][,val=SPLIT]' -> DataSpec; DataError naming an unknown option or a bad value."""
    path, _, tail = text.rpartition(":")
    if not path or not _OPTIONS.match(tail) or Path(text).exists():
        return DataSpec(text)
    options = dict(item.split("=") for item in tail.split(","))
    unknown = sorted(set(options) - set(DATA_OPTIONS))
    if unknown:
        raise DataError(f"--data {text}: unknown option {unknown[0]!r}; the options are "
                        f"{', '.join(f'{k}=N' for k in DATA_OPTIONS)} (e.g. --data {path}:weight=0.5,units=5000)")
    try:
        values = {key: DATA_OPTIONS[key](value) for key, value in options.items()}
    except (ValueError, argparse.ArgumentTypeError) as err:  # not a number, or not above 0
        raise DataError(f"--data {text}: {err}") from None
    return DataSpec(path, values.get("weight", 1.0), values.get("units"), values.get("train"), values.get("val"))


class _AppendData(argparse.Action):
    """--data: each use adds a dataset (replacing the default, not added to it), its options checked at once."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            parse_data_spec(values)
        except DataError as err:
            parser.error(str(err))
        given = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, [*given, values] if isinstance(given, list) else [values])


def add_data_argument(parser, default: str, default_help: str) -> None:
    """Add --data (PATH[:weight=W,units=N,train=SPLIT,val=SPLIT], any number of times); data_value turns what it
    parsed into args.data."""
    parser.add_argument("--data", action=_AppendData, default=None, metavar="PATH[:weight=W,units=N,train=S,val=S]",
                        help=f"any dataset layouts.py reads (default {default_help}); given several times, a "
                             "mixture: each dataset gives its weight's share of the training frames (weight=W, "
                             "default 1) and may have its own 16-bit depth unit (units=N per metre) and splits "
                             "(train=SPLIT, val=SPLIT or val=none)")


def data_value(parsed: list | None, default: str):
    """args.data from what --data parsed: the default, the one value given (as before mixtures: a run's
    args.json keeps a plain path), or the list of a mixture's values."""
    return default if not parsed else parsed[0] if len(parsed) == 1 else parsed


def data_specs(data_flag) -> list[DataSpec]:
    """args.data (one --data value, or a list of them for a mixture) -> its DataSpecs."""
    return [parse_data_spec(text) for text in ([data_flag] if isinstance(data_flag, str) else data_flag)]


# ---------------------------------------------------------------------------
# The mixture
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Mixture:
    """Splits of one or more datasets, the share of the training frames each gives (weights summing to 1), and the
    log of the frames its pipelines left out of each (`skipped`, one SkipLog per split: callbacks.SkippedFrames
    reports and empties them at each epoch's end)."""

    splits: list[Split]
    weights: list[float]
    skipped: list[SkipLog]

    @classmethod
    def of(cls, splits, weights=None) -> "Mixture":
        """A Mixture of `splits` (a Split alone: a mixture of one) at `weights` (default equal), normalised."""
        splits = [splits] if isinstance(splits, Split) else list(splits)
        weights = np.ones(len(splits)) if weights is None else np.asarray(weights, float)
        return cls(splits, list(weights / weights.sum()), [SkipLog() for _ in splits])

    def __len__(self):
        return sum(len(split) for split in self.splits)

    def describe(self, weighted: bool = True) -> str:
        """'N frames of SOURCE [split]' for each dataset, joined by ' + ', each with its weight when weighted and
        there are several (a validation mixture reads every frame: it has none)."""
        named = [f"{len(s)} frames of {s.source} [{s.name}]" for s in self.splits]
        if len(named) == 1 or not weighted:
            return " + ".join(named)
        return " + ".join(f"{text} (weight {weight:.2f})" for text, weight in zip(named, self.weights))

    def dataset(self, *, batch_size: int, training: bool = False, seed: int = 0, select=None, start_batch: int = 0,
                **options) -> tf.data.Dataset:
        """data.make_dataset over the mixture: batches (rgb [B, H, W, 3], y_true [B, h, w, 2], ...) of frames drawn
        from the datasets at their weights (training: each dataset shuffled and repeated on its own, dataset i
        seeded seed + i, the draws seeded by seed: choices), or every validation frame once, dataset after dataset.
        select: None, or a function of a Split giving make_dataset's `select` for it (a worker's shard,
        loop.shard_select). start_batch (training): the batches already trained; each dataset starts after the
        frames the draws before it took from that dataset (choice_counts), none of them read. options:
        make_dataset's other arguments. One dataset: make_dataset itself. Each split's skipped frames go to its log.
        """
        selects = [select(split) if select else None for split in self.splits]
        if len(self.splits) == 1:
            return data.make_dataset(self.splits[0], batch_size=batch_size, training=training, seed=seed,
                                     select=selects[0], start_batch=start_batch, skipped=self.skipped[0], **options)
        if not training:
            examples = [data.make_dataset(split, batch_size=1, select=chosen, skipped=skipped, **options).unbatch()
                        for split, chosen, skipped in zip(self.splits, selects, self.skipped)]
            return functools.reduce(tf.data.Dataset.concatenate, examples).batch(batch_size).prefetch(tf.data.AUTOTUNE)
        drawn = start_batch * batch_size
        taken = choice_counts(seed, self.weights, drawn)
        examples = [data.make_dataset(split, batch_size=1, training=True, seed=seed + i, select=chosen,
                                      start_batch=int(taken[i]), skipped=skipped, **options).unbatch().repeat()
                    for i, (split, chosen, skipped) in enumerate(zip(self.splits, selects, self.skipped))]
        mixed = tf.data.Dataset.choose_from_datasets(examples, choices(seed, self.weights, drawn))
        return mixed.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


CHOICE_BLOCK = 4096  # draws made at once: the choice stream's unit, so counting the draws before a position is cheap


def _block_choices(seed: int, weights, block):
    """int64 [CHOICE_BLOCK]: the datasets drawn (at `weights`) by draws block * CHOICE_BLOCK + 0, 1, ..., stateless."""
    key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 1], tf.int64), tf.cast(block, tf.int64))
    cumulative = tf.constant(np.cumsum(weights)[:-1], tf.float32)
    return tf.searchsorted(cumulative, tf.random.stateless_uniform([CHOICE_BLOCK], key), side="right", out_type=tf.int64)


def choices(seed: int, weights, start: int = 0) -> tf.data.Dataset:
    """The dataset (int64) of every training draw of a mixture from draw `start` on: a function of the seed and the
    draw's number alone, so a resumed run continues the uninterrupted run's draws."""
    blocks = tf.data.Dataset.range(start // CHOICE_BLOCK, np.iinfo(np.int64).max)
    stream = blocks.flat_map(do_not_convert(
        lambda block: tf.data.Dataset.from_tensor_slices(_block_choices(seed, weights, block))))
    return stream.skip(start % CHOICE_BLOCK)  # integers only: nothing is read


def choice_counts(seed: int, weights, draws: int) -> np.ndarray:
    """How many of the first `draws` draws of `choices` chose each dataset: int [len(weights)], counted in blocks
    (750,000 draws, 15 epochs of NYU's 50,000 frames, take well under a second)."""
    whole, rest = divmod(draws, CHOICE_BLOCK)
    counts = np.zeros(len(weights), np.int64)
    for block in range(whole + 1):
        drawn = _block_choices(seed, weights, block).numpy()[:CHOICE_BLOCK if block < whole else rest]
        counts += np.bincount(drawn, minlength=len(weights))
    return counts


def open_mixtures(specs: list[DataSpec], *, train_split: str = "auto", val_split: str = "auto",
                  depth_units_per_metre: float | None = None, tfds_data_dir=None,
                  prepare=lambda path: path) -> tuple[Mixture, Mixture | None]:
    """(training mixture, validation mixture or None) of the datasets `specs`. Each dataset's splits are chosen
    alone (a spec's own train=/val= first, else train_split and val_split): 'auto' for training is its 'train' split
    if it has one, else 'all'; 'auto' for validation its 'test' split if it has one, else none ('none': none). A dataset's own units replace depth_units_per_metre.
    prepare(path) -> the path to open (train.py writes the default synthetic set there on first use)."""
    trains, vals = [], []
    for spec in specs:
        units = spec.units_per_metre if spec.units_per_metre is not None else depth_units_per_metre
        source = open_source(prepare(spec.path), units, tfds_data_dir)
        train_name = spec.train_split or train_split
        val_name = spec.val_split or val_split
        train_name = train_name if train_name != "auto" else ("train" if "train" in source.splits else "all")
        val_name = val_name if val_name != "auto" else ("test" if "test" in source.splits else "none")
        trains.append(source.split(train_name))
        if val_name != "none":
            vals.append(source.split(val_name))
    return Mixture.of(trains, [spec.weight for spec in specs]), Mixture.of(vals) if vals else None


# ---------------------------------------------------------------------------
# Can the data train? (read before anything is written)
# ---------------------------------------------------------------------------

def readable_frames(split: Split) -> int:
    """How many frames of `split` can be read (their files there and whole), through the pipeline's reading
    stage alone, so that the validation length counts the frames that will arrive. DataError when none can."""
    skipped = SkipLog()
    count = int(blobs(split, skipped=skipped).reduce(np.int64(0), do_not_convert(lambda total, _: total + 1)))
    if count == 0:
        raise nothing_usable(split, skipped, len(split))
    return count


def target_statistics(dataset: tf.data.Dataset, depth_scale: DepthScale,
                      batches: int = 8) -> tuple[int, float, float, float]:
    """(batches read, valid target pixels, their mean encoded target, their mean depth in metres) over the first
    `batches` batches of the training dataset, whose targets depth_scale encodes (so depths are clipped to its
    range); 0 batches means a whole pass over the split gave none."""
    seen, total, total_m, count = 0, 0.0, 0.0, 0.0
    for _, y_true in dataset.take(batches):
        target, mask = unpack_target(y_true)
        seen, count = seen + 1, count + float(tf.reduce_sum(mask))
        total += float(tf.reduce_sum(target * mask))
        total_m += float(tf.reduce_sum(depth_scale.decode(target) * mask))
    return seen, count, total / max(count, 1.0), total_m / max(count, 1.0)


def check_training_data(split: Split, skipped: SkipLog, batches_seen: int, valid_pixels: float,
                        batch_size: int) -> None:
    """DataError, before anything is written, when the training split gives nothing to learn from: no
    readable frame, fewer readable frames than a batch, or no valid depth pixel in the first batches. skipped: the
    log of the pass that saw batches_seen batches (and valid_pixels valid depth pixels in them)."""
    where = f"{split.source} [{split.name}]"
    if batches_seen == 0:
        if skipped.count >= len(split):
            raise nothing_usable(split, skipped, len(split))
        raise DataError(f"{where} has {len(split) - skipped.count} readable frames, fewer than --bs {batch_size}")
    if valid_pixels == 0:
        raise DataError(f"no valid depth pixel in the first {batches_seen * batch_size} frames of {where}: every "
                        "depth there is 0, NaN, negative or outside the depth range; check the depth files")


def training_statistics(train: Mixture, *, batch_size: int, depth_scale: DepthScale, seed: int = 0,
                        **options) -> tuple[float, float]:
    """(mean encoded target, mean depth in metres) of the valid pixels of the mixture's first 8 training batches,
    after checking every dataset alone (check_training_data: each must fill a batch of batch_size with some valid
    depth; a worker's shard keeps whole batches of each). options: make_dataset's other arguments."""
    for i, (split, skipped) in enumerate(zip(train.splits, train.skipped)):
        alone = data.make_dataset(split, batch_size=batch_size, training=True, seed=seed + i, depth_scale=depth_scale,
                                  skipped=skipped, **options).repeat()
        stats = target_statistics(alone, depth_scale)
        check_training_data(split, skipped, *stats[:2], batch_size)
    if len(train.splits) > 1:
        mixed = train.dataset(batch_size=batch_size, training=True, seed=seed, depth_scale=depth_scale, **options)
        stats = target_statistics(mixed, depth_scale)
    return stats[2], stats[3]
