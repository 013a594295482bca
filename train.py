"""Train a depth model: python train.py [--model unet|transfer] [--data PATH] [--epochs N] ...

A run directory (--out) holds args.json, history.csv, checkpoints/{best,last}.keras, model.keras at the
end, TensorBoard logs (with validation depth maps) and a backup that --resume continues from (rundir.py).
One training loop (loop.py) serves one device, MirroredStrategy and MultiWorkerMirroredStrategy (distribute.py).
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import dataclasses
import errno
import functools
import shutil
import sys
from contextlib import ExitStack
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import data
import model as models
import rundir
import synth
from callbacks import make_callbacks
from cli import first_line, user_error
from depth import DepthScale
from distribute import (LOST_WORKER, check_same_everywhere, cluster_resolver, common_epoch, describe_devices,
                        make_strategy, worker_fields, worker_index)
from finetune import adopt_init_model, init_net
from layouts import DataError, Split
from loop import Deadline, Loop, NonFiniteLoss, Progress, StepFunctions, distributed_dataset
from mixtures import Mixture, data_specs, open_mixtures, readable_frames, target_statistics, training_statistics
from options import DEFAULT_DATA, SAFE_ON_RESUME, SAME_ON_EVERY_WORKER, parse_args
from rundir import Position

WRITE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM)  # a full or read-only disk


# ---------------------------------------------------------------------------
# Devices and precision
# ---------------------------------------------------------------------------

def set_precision(mixed: bool) -> str:
    """Set Keras's global dtype policy; returns its name."""
    policy = ("mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16") if mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def check_batch_size(batch_size: int, replicas: int) -> None:
    """ValueError unless the global batch `batch_size` (--bs) divides evenly among the strategy's replicas."""
    if batch_size % replicas:
        raise ValueError(f"--bs {batch_size} does not divide by the {replicas} replicas: pass a multiple of {replicas}")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def prepare_data(path: str) -> str:
    """The path to open for a --data path: the default synthetic set is written there on first use."""
    return synth.ensure_synthetic(path) if path == DEFAULT_DATA else path


def open_data(data, *, train_split: str, val_split: str, depth_units_per_metre: float | None = None,
              tfds_data_dir: str | None = None) -> tuple[Mixture, Mixture | None]:
    """(training mixture, validation mixture or None) of --data `data` (one value or a list: a mixture,
    mixtures.open_mixtures); the default synthetic set is written on first use."""
    return open_mixtures(data_specs(data), train_split=train_split, val_split=val_split,
                         depth_units_per_metre=depth_units_per_metre, tfds_data_dir=tfds_data_dir, prepare=prepare_data)


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


def check_data(strategy, train: Mixture, val: Mixture | None, *, same_on_every_worker: dict, depth_range_m) -> None:
    """Before the model is built: every worker has the same flags (same_on_every_worker, flag name -> value) and
    data, or all stop (ValueError); each training split's depth is read in the right unit (check_depth_units); each
    validation split has a readable frame (a validation loss of 0 is no validation). DataError otherwise."""
    splits = train.splits + (val.splits if val else [])
    check_same_everywhere(strategy, worker_fields(same_on_every_worker, splits))
    for split in train.splits:
        check_depth_units(split, depth_range_m)
    for split in val.splits if val else []:
        readable_frames(split)


def example_options(*, input_hw, target_hw, depth_scale: DepthScale, seed: int, strict: bool, augment: bool) -> dict:
    """data.make_dataset's arguments that flags set, other than the split, batch size and training."""
    return dict(input_hw=tuple(input_hw), target_hw=tuple(target_hw), depth_scale=depth_scale, seed=seed,
                strict=strict, augmentation=data.Augment() if augment else None)


def distributed_datasets(strategy, train, val, *, batch_size: int, skip_steps: int, val_steps: int | None,
                         **options):
    """(training, validation or None) distributed datasets of global batch `batch_size` of `train` and `val`
    (Splits or Mixtures), each worker reading only its own share of the frames (loop.shard_select); training starts
    after `skip_steps` steps (a resumed run's position), validation stops after val_steps (None: all). options:
    example_options'."""
    train = distributed_dataset(strategy, train, batch_size, True, skip_steps=skip_steps, **options)
    val = val and distributed_dataset(strategy, val, batch_size, False, take_steps=val_steps, **options)
    return train, val


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def build_net(kind: str, *, input_hw, depth_scale: DepthScale, synchronized_bn: bool = False,
              base_filters: int = models.DEFAULT_BASE_FILTERS, encoder: str = models.DEFAULT_ENCODER,
              encoder_weights: str = "none", decoder_width: float = models.DEFAULT_DECODER_WIDTH,
              preset: str = models.DEFAULT_PRESET) -> keras.Model:
    """The model `kind` (--model), uncompiled, from the flags its builder takes (the others are ignored; defaults:
    model.py's); synchronized_bn for more than one replica (model.build_model)."""
    per_kind = {
        "unet": {"base_filters": base_filters},
        "transfer": {"encoder": encoder, "encoder_weights": encoder_weights, "decoder_width": decoder_width},
        "depth-anything": {"preset": preset, "encoder_weights": encoder_weights},
    }
    return models.build_model(kind, synchronized_bn=synchronized_bn, input_hw=tuple(input_hw), depth_scale=depth_scale,
                              **per_kind[kind])


def compile_net(net: keras.Model, *, lr: float, ema_momentum: float = 0.0) -> keras.Model:
    """Give `net` a fresh Adam (amsgrad) of learning rate lr, keeping a moving average of the weights when
    ema_momentum > 0 (Keras's use_ema). The optimizer is all the loop (loop.StepFunctions) and the files need:
    checkpoints save it, model.keras drops it; no loss or metric is compiled in, so every file loads with model.py
    alone."""
    average = {"use_ema": True, "ema_momentum": ema_momentum} if ema_momentum else {}
    net.compile(optimizer=keras.optimizers.Adam(learning_rate=lr, amsgrad=True, **average))
    return net


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs first_epoch to end_epoch - 1 (0-based), trained with the encoder frozen or not."""

    first_epoch: int
    end_epoch: int
    encoder_frozen: bool


def training_phases(epochs: int, freeze_encoder_epochs: int) -> list[Phase]:
    """The decoder warm-up of freeze_encoder_epochs epochs, if any, then everything until `epochs`."""
    frozen_until = min(freeze_encoder_epochs, epochs)
    phases = [Phase(0, frozen_until, True), Phase(frozen_until, epochs, False)]
    return [phase for phase in phases if phase.end_epoch > phase.first_epoch]


def init_output_bias(net: keras.Model, dataset: tf.data.Dataset, batches: int = 8) -> float:
    """model.set_output_bias to the mean encoded target over `batches` training batches; returns it."""
    mean = target_statistics(dataset, models.depth_scale_of(net), batches)[2]
    models.set_output_bias(net, mean)
    return mean


# ---------------------------------------------------------------------------
# The run's phases
# ---------------------------------------------------------------------------

def restore_position(strategy, backup: rundir.Backup, *, resume: bool) -> Position:
    """Where the run stands: the latest backup every worker holds when resuming (distribute.common_epoch), else a
    new run's Position(); ValueError when the workers disagree on it."""
    kept = backup.available() if resume else {}
    epochs_done = common_epoch(strategy, list(kept))
    position = Position(epochs_done, kept[epochs_done][0] if epochs_done else 0)
    check_same_everywhere(strategy, {"the backup's epoch": [position.epochs_done, position.steps_done]})
    return position


def run_phases(net: keras.Model, strategy, loop: Loop, position: Position, *, phases: list[Phase],
               depth_scale: DepthScale, lr: float, ema_momentum: float, theta: float, jit_compile: bool,
               freezing: bool) -> None:
    """Train the epochs of `phases` not yet done at `position`, each phase with a fresh optimizer (the saved one
    restored within the phase that saved it) and its own StepFunctions; stops early when the time budget ends.
    freezing: the run has a frozen phase (--freeze-encoder-epochs), so each phase sets and says the encoder's state."""
    for phase in phases:
        if phase.end_epoch <= position.epochs_done and phase is not phases[-1]:
            continue  # the last phase is set up even when done: a run stopped while saving model.keras saves it again
        if freezing:
            models.set_encoder_trainable(net, not phase.encoder_frozen)
            print(f"epochs {phase.first_epoch + 1}-{phase.end_epoch}: encoder "
                  f"{'frozen' if phase.encoder_frozen else 'trainable'}", file=sys.stderr)
        with strategy.scope():
            compile_net(net, lr=lr, ema_momentum=ema_momentum)
        functions = StepFunctions(net, strategy, depth_scale, theta, jit_compile, steps_per_call=loop.steps_per_call)
        loop.backup.track(net, net.optimizer)
        if position.epochs_done > phase.first_epoch:  # the optimizer's moments only within the phase that saved them
            loop.backup.restore(position.epochs_done, net, net.optimizer)
            net.optimizer.learning_rate.assign(lr)  # the saved rate, unless --resume --lr changed it
        epochs = range(max(phase.first_epoch, position.epochs_done), phase.end_epoch)
        if not all(loop.epoch(epoch, functions) for epoch in epochs):
            return  # the time budget ran out


def start_weights(net: keras.Model, *, position: Position, init_from: str | None, bias_init: bool,
                  mean_target: float, mean_depth_m: float, data_description: str, depth_mode: str) -> None:
    """The weights a run starts from, said in its log: the training frames' mean depth (metres) recorded in the model
    (evaluate.py's fair baseline, saved in every .keras file of the run); --init-from's weights kept as loaded; else,
    on a new run with bias_init, the output bias set to the mean training target (a resumed run's is in its backup)."""
    models.record_train_mean_depth(net, mean_depth_m, data_description)
    print(f"training frames' mean depth {mean_depth_m:.3f} m, recorded in the model (evaluate.py's fair baseline)",
          file=sys.stderr)
    if init_from:
        print(f"starting from every weight of {init_from}", file=sys.stderr)
    elif bias_init and position.epochs_done == 0:
        models.set_output_bias(net, mean_target)
        print(f"output bias set to the mean training target {mean_target:.3f} ({depth_mode} units)", file=sys.stderr)


def describe_run(net: keras.Model, strategy, *, policy: str, worker: int | None, train: Mixture,
                 val: Mixture | None, steps_per_epoch: int, epochs: int, run_dir: Path) -> None:
    """The run's log lines before its first epoch: the devices, then the model, the data and the schedule
    (worker: this worker's index in a multi-worker run, else None)."""
    validating = "nothing" if val is None else val.describe(weighted=False) if len(val.splits) > 1 else \
        f"{len(val)} frames [{val.splits[0].name}]"
    print(f"training on {describe_devices(strategy)}", file=sys.stderr)
    print(f"training {net.name} ({net.count_params():,} parameters, {policy}, {strategy.num_replicas_in_sync} "
          f"replica(s){'' if worker is None else f', worker {worker}'}) on {train.describe()}, {steps_per_epoch} steps "
          f"x {epochs} epochs; validating on {validating}; run: {run_dir}", file=sys.stderr)


def make_loop(strategy, net: keras.Model, train: Mixture, val: Mixture | None, *, position: Position,
              backup: rundir.Backup, run_dir: Path, chief: bool, batch_size: int, val_steps: int | None,
              steps_per_epoch: int, steps_per_call: int, epochs: int, time_budget_min: float | None,
              log_every_s: float, tb_images: int, depth_scale: DepthScale, options: dict) -> Loop:
    """The run's Loop: its training input from `position` on, its validation, progress, and the chief's end-of-epoch
    callbacks (continuing history.csv's rows of the completed epochs). options: example_options'."""
    history = [row for row in rundir.read_history(run_dir / "history.csv") if row["epoch"] < position.epochs_done]
    train_stream, val_stream = distributed_datasets(strategy, train, val, batch_size=batch_size,
                                                    skip_steps=position.steps_done, val_steps=val_steps, **options)
    mapping = chief and val is not None and tb_images > 0  # one device's validation batches: TensorBoard's depth maps
    val_maps = val.dataset(batch_size=batch_size, **options) if mapping else None
    callbacks = make_callbacks(run_dir, history, train, val, depth_scale, tb_images=tb_images,
                               val_maps=val_maps) if chief else []
    return Loop(iterator=iter(train_stream), val=val_stream, steps_per_epoch=steps_per_epoch,
                steps_per_call=steps_per_call, deadline=Deadline(time_budget_min),
                progress=Progress(steps_per_epoch, epochs, log_every_s, enabled=chief),
                callbacks=keras.callbacks.CallbackList(callbacks, model=net), backup=backup,
                global_step=position.steps_done)


def save_final_model(net: keras.Model, run_dir: Path) -> Path:
    """model.keras, written whole: the same layers and weights (the optimizer's moving average, if kept) without
    the optimizer (the inference artefact); refused if a weight is not finite."""
    net.optimizer.finalize_variable_values(net.trainable_variables)
    if not all(np.isfinite(w).all() for w in net.get_weights()):
        raise NonFiniteLoss(f"the weights are not finite; {run_dir / 'model.keras'} was not written")
    final = run_dir / "model.keras"
    rundir.write_whole(final, keras.Model(net.inputs, net.outputs, name=net.name).save)
    print(f"saved {final}", file=sys.stderr)
    return final


def main(args: argparse.Namespace) -> Path:
    """Train as `args` say; returns the path of the final model.keras (the chief's; other workers write none).
    In order: the run's arguments, the strategy, the data checked, the model, the position restored, the phases."""
    resolver = cluster_resolver() if args.strategy == "multiworker" else None
    worker = worker_index(resolver)
    chief = worker == 0
    given = set(args.given)  # the flags on the command line, which an --init-from model must not contradict
    args = rundir.run_arguments(args, SAFE_ON_RESUME, chief=chief,
                                parse=functools.partial(parse_args, parser_class=rundir.RefusingParser))
    run_dir = Path(args.out)
    with ExitStack() as stack:
        locked = args.resume and run_dir.is_dir() and chief
        if locked:
            stack.enter_context(rundir.RunLock(run_dir))  # at once: nothing may read the state another writes
        strategy = make_strategy(args.strategy, args.logical_devices, resolver, args.collective_timeout)  # TF's first
        replicas = strategy.num_replicas_in_sync
        check_batch_size(args.bs, replicas)
        keras.utils.set_random_seed(args.seed)
        policy = set_precision(args.mixed_precision)
        net = None
        if args.init_from:
            with strategy.scope():  # a resumed run's weights then come from its backup, as any run's
                net = init_net(args.init_from, synchronized_bn=replicas > 1)
            args = args if args.resume else adopt_init_model(args, net, given)
        depth_scale = DepthScale(args.depth_mode, args.min_depth_m, args.max_depth_m)
        train_data, val_data = open_data(args.data, train_split=args.train_split, val_split=args.val_split,
                                         depth_units_per_metre=args.depth_units_per_metre,
                                         tfds_data_dir=args.tfds_data_dir)
        shared = {name: vars(args)[name] for name in SAME_ON_EVERY_WORKER}
        check_data(strategy, train_data, val_data, same_on_every_worker=shared,
                   depth_range_m=(args.min_depth_m, args.max_depth_m))
        if net is None:
            with strategy.scope():
                net = build_net(args.model, input_hw=args.input_size, depth_scale=depth_scale,
                                synchronized_bn=replicas > 1, base_filters=args.base_filters, encoder=args.encoder,
                                encoder_weights=args.encoder_weights, decoder_width=args.decoder_width,
                                preset=args.preset)
        options = example_options(input_hw=args.input_size, target_hw=net.output_shape[1:3], depth_scale=depth_scale,
                                  seed=args.seed, strict=args.strict, augment=not args.no_augment)
        mean_target, mean_depth_m = training_statistics(train_data, batch_size=args.bs, **options)
        if not locked:  # a new run (or a worker): lock its folder now, before the first write
            stack.enter_context(rundir.RunLock(run_dir if chief else rundir.backup_dir(run_dir, worker)))
        backup = rundir.Backup(rundir.backup_dir(run_dir, worker))
        position = restore_position(strategy, backup, resume=args.resume)
        if chief:  # only now: a run whose data cannot train leaves no run directory behind
            for stale in rundir.remove_partials(run_dir):
                print(f"removed {stale}, half-written when the run was stopped", file=sys.stderr)
            rundir.save_run_arguments(run_dir, vars(args))
        if position.epochs_done >= args.epochs and (run_dir / "model.keras").exists():
            print(f"{run_dir} is complete ({position.epochs_done} of {args.epochs} epochs); --resume --epochs N trains "
                  "it further", file=sys.stderr)
            return run_dir / "model.keras"
        start_weights(net, position=position, init_from=args.init_from, bias_init=not args.no_bias_init,
                      mean_target=mean_target, mean_depth_m=mean_depth_m, data_description=train_data.describe(),
                      depth_mode=args.depth_mode)
        steps_per_epoch = args.steps_per_epoch or max(1, len(train_data) // args.bs)
        describe_run(net, strategy, policy=policy, worker=worker if resolver else None, train=train_data,
                     val=val_data, steps_per_epoch=steps_per_epoch, epochs=args.epochs, run_dir=run_dir)
        loop = make_loop(strategy, net, train_data, val_data, position=position, backup=backup, run_dir=run_dir,
                         chief=chief, batch_size=args.bs, val_steps=args.val_steps, steps_per_epoch=steps_per_epoch,
                         steps_per_call=args.steps_per_execution, epochs=args.epochs, time_budget_min=args.time_budget,
                         log_every_s=args.log_every, tb_images=args.tb_images, depth_scale=depth_scale,
                         options=options)
        if position.epochs_done > 0:
            backup.restore(position.epochs_done, net)
        run_phases(net, strategy, loop, position, phases=training_phases(args.epochs, args.freeze_encoder_epochs),
                   depth_scale=depth_scale, lr=args.lr, ema_momentum=args.ema_momentum, theta=args.theta,
                   jit_compile=args.jit_compile, freezing=args.freeze_encoder_epochs > 0)
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
