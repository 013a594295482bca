"""The training loop of train.py: one train step for every tf.distribute strategy (one device, MirroredStrategy,
MultiWorkerMirroredStrategy), the input shards it reads, validation, progress and the end of every epoch.

Keras's Model.fit is not used: it cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585, then
tensorflow/tensorflow#72388), and under MirroredStrategy it would sum a scalar loss over replicas. Here every
replica adds up the loss's sums and counts (`loss.batch_totals`), the counts are summed over all replicas before
the forward pass, and each replica's loss is its sums over those global counts, so the gradients the optimizer
sums over replicas are one device's gradients on the global batch (with BatchNormalization synchronised,
model.build_model(synchronized_bn=True)). Logged values are the epoch's totals over every replica and step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time

import keras
import tensorflow as tf

from augment import apply_colour, to_float
from depth import unpack_target
from loss import batch_totals, logs_from_totals, loss_counts, terms_from_parts, weighted_loss, zero_totals
from mixtures import Mixture

SUM = tf.distribute.ReduceOp.SUM
STOP = "stop"  # the totals' key of the replicas' stop requests (the time budget), summed like the rest


class NonFiniteLoss(RuntimeError):
    """The loss of a training step was NaN or infinite; the weights of that step are not saved."""


# ---------------------------------------------------------------------------
# Input: each worker reads only its own share of the frames
# ---------------------------------------------------------------------------

def shard_select(context: tf.distribute.InputContext, per_replica_batch: int, training: bool):
    """data.make_dataset's `select` for the input pipeline of `context`: of a pass's frame indices (int64 [n], in
    the pass's order), groups of per_replica_batch * (this worker's replicas), group g going to worker g mod workers,
    so step k's global batch holds the same frames for any number of workers and replicas (one device's batch k).
    Training keeps whole global batches of each pass over the split, as one device's drop_remainder does."""
    local = context.num_replicas_in_sync // context.num_input_pipelines
    global_batch = per_replica_batch * context.num_replicas_in_sync

    def select(indices):
        if training:
            indices = indices[:tf.size(indices, tf.int64) // global_batch * global_batch]
        group = tf.range(tf.size(indices, tf.int64)) // (per_replica_batch * local)
        return tf.boolean_mask(indices, group % context.num_input_pipelines == context.input_pipeline_id)

    return select


def distributed_dataset(strategy, split, global_batch: int, training: bool, skip_steps: int = 0, take_steps=None,
                        **make_dataset_kwargs):
    """strategy.distribute_datasets_from_function over data.make_dataset of `split` (a Split, or a
    mixtures.Mixture of several), each worker reading its shard (shard_select) of each split in per-replica
    batches. Training repeats and starts after `skip_steps` global steps (a resumed run's data position: the
    pipeline computes the pass and the place in it from the step, before any file is read, so the batches are the
    uninterrupted run's next ones), its RGB in uint8 with the colour augmentation left to the train step;
    take_steps limits a finite (validation) dataset to that many global steps."""
    mixture = split if isinstance(split, Mixture) else Mixture.of(split)

    def make(context):
        per_replica = context.get_per_replica_batch_size(global_batch)
        local = context.num_replicas_in_sync // context.num_input_pipelines

        def select(one):
            # A streamed split (TFDS) has no frame indices to deal out: read whole by one worker, it needs no select
            # (data.frames refuses one, so several workers stop with a sentence).
            one_reader = one.stream is not None and context.num_input_pipelines == 1
            return None if one_reader else shard_select(context, per_replica, training)

        if training:  # each global step takes `local` per-replica batches from this worker's pipeline
            return mixture.dataset(batch_size=per_replica, training=True, select=select, start_batch=skip_steps * local,
                                   uint8_rgb=True, **make_dataset_kwargs).repeat()
        dataset = mixture.dataset(batch_size=per_replica, training=False, select=select, **make_dataset_kwargs)
        return dataset.take(take_steps * local) if take_steps else dataset

    return strategy.distribute_datasets_from_function(make)


# ---------------------------------------------------------------------------
# The step functions
# ---------------------------------------------------------------------------

class StepFunctions:
    """The compiled train and validation step functions of `net` under `strategy`; each returns the batch totals
    (loss.batch_totals) summed over all replicas, as float32 scalars. A step is one global batch, and "steps"
    always counts them (steps_per_epoch, steps_in_call, skip_steps, global_step).

    net must have been built under strategy.scope() and given its optimizer (train.compile_net); make new
    StepFunctions after compiling again (a new phase of --freeze-encoder-epochs: new trainable variables).
    """

    def __init__(self, net: keras.Model, strategy, depth_scale, theta: float, jit_compile: bool = False,
                 steps_per_call: int = 1):
        self.net, self.strategy, self.depth_scale, self.theta = net, strategy, depth_scale, theta
        self.steps_per_call = steps_per_call
        self.optimizer = net.optimizer
        with strategy.scope():  # the optimizer's variables are made here, not inside the first traced step
            self.optimizer.build(net.trainable_variables)
        # XLA compiles the replica's step as a nested tf.function, which cannot hold the all-reduces of more
        # than one replica (TensorFlow's "merge_call called while defining a new graph"): one replica only.
        one = strategy.num_replicas_in_sync == 1
        self._replica_train = tf.function(self._replica_train_step, jit_compile=True, autograph=False) \
            if jit_compile and one else self._replica_train_step
        # One step a call: the step itself. More: a tf.while_loop of the step (as Keras's fit runs
        # steps_per_execution), traced once whatever the count; a Python loop unrolled the step once per step of each
        # count (calls of 2 then 1 traced it 3 times, ~4 s more for a tiny UNet), and a one-step call inside a while
        # loop cost ~0.7 s more to build than the step alone.
        self._train = tf.function(self._run_steps, autograph=False)
        self._zero_totals = {**zero_totals(), STOP: tf.zeros([])} if steps_per_call > 1 else None

    def _replica_train_step(self, x, y_true, colour=None):
        """One replica's share of a step: x [b, H, W, 3] (uint8, or float in [0, 1]), y_true [b, h, w, 2] and, with
        colour augmentation, colour [b, 6] (augment.colour_draws, applied here on the device) -> its totals."""
        x = to_float(x) if colour is None else apply_colour(x, colour)
        # Normalise by the valid pixels (and images) of the whole global batch: summed over replicas before the
        # forward pass, so each replica's gradient is its share of the one-device gradient.
        counts = tf.distribute.get_replica_context().all_reduce(SUM, loss_counts(unpack_target(y_true)[1]))
        variables = self.net.trainable_variables
        with tf.GradientTape() as tape:
            y_pred = self.net(x, training=True)
            totals = batch_totals(y_true, y_pred, self.depth_scale)
            sums = {key: totals[f"loss/{key}"] for key in counts}
            loss = weighted_loss(terms_from_parts(sums, counts), self.theta)
            scaled = self.optimizer.scale_loss(loss)  # a LossScaleOptimizer's scale under mixed_float16, else 1
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return totals

    def train(self, iterator, steps_in_call: int, stop: bool) -> dict:
        """Run `steps_in_call` train steps (one compiled call, 1 to steps_per_call) from the distributed iterator;
        returns their totals summed, as numpy floats; totals[STOP] > 0 when any worker asked to stop (stop=True)."""
        if not 1 <= steps_in_call <= self.steps_per_call:
            raise ValueError(f"steps_in_call must be 1 to {self.steps_per_call}, got {steps_in_call}")
        totals = self._train(iterator, tf.constant(steps_in_call), tf.constant(float(stop)))
        return {k: v.numpy() for k, v in totals.items()}

    def _run_steps(self, iterator, steps_in_call, stop):
        if self.steps_per_call == 1:
            return self._step(iterator, stop)

        def add_step(done, totals):
            return done + 1, {k: totals[k] + v for k, v in self._step(iterator, stop).items()}

        # one step at a time (parallel_iterations=1): each reads the weights the step before it updated
        return tf.while_loop(lambda done, _: done < steps_in_call, add_step, (tf.constant(0), self._zero_totals),
                             parallel_iterations=1)[1]

    def _step(self, iterator, stop):
        """One global step's totals, summed over the replicas."""
        # tf.identity: each replica's own copy of the stop request, so that it can be summed like the totals
        per_replica = self.strategy.run(lambda *batch: {**self._replica_train(*batch), STOP: tf.identity(stop)},
                                        args=next(iterator))
        return {k: self.strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}

    @contextlib.contextmanager
    def averaged_weights(self):
        """Inside, the model holds the optimizer's moving average of its weights (Keras's use_ema, Polyak
        averaging), swapped in and back out by keras.callbacks.SwapEMAWeights; without use_ema, nothing changes."""
        # under mixed_float16 a LossScaleOptimizer wraps the optimizer that keeps the average
        if not getattr(self.optimizer, "inner_optimizer", self.optimizer).use_ema:
            yield
            return
        swap = keras.callbacks.SwapEMAWeights()
        swap.set_model(self.net)
        swap.on_test_begin()
        try:
            yield
        finally:
            swap.on_test_end()

    @tf.function(autograph=False)
    def _validate(self, batch):
        x, y_true = batch
        per_replica = self.strategy.run(lambda x, y: batch_totals(y, self.net(x, training=False), self.depth_scale),
                                        args=(x, y_true))
        return {k: self.strategy.reduce(SUM, v, axis=None) for k, v in per_replica.items()}

    def validate(self, dataset) -> dict:
        """Logs of the whole distributed validation dataset (loss.logs_from_totals), every replica's frames pooled."""
        totals = {}
        for batch in dataset:
            totals = add(totals, {k: v.numpy() for k, v in self._validate(batch).items()})
        return logs_from_totals(totals, self.theta)


def add(totals: dict, more: dict) -> dict:
    """Totals plus more, key by key (an empty dict is zero)."""
    return {k: totals.get(k, 0.0) + v for k, v in more.items()}


# ---------------------------------------------------------------------------
# Progress and the time budget
# ---------------------------------------------------------------------------

class Progress:
    """Progress inside an epoch: Keras's Progbar on a terminal; otherwise (a file, a cluster job's log) a line
    every `every_s` seconds with steps/s and the epoch's ETA, and one line per epoch."""

    def __init__(self, steps_per_epoch: int, epochs: int, every_s: float, enabled: bool = True):
        self.steps_per_epoch, self.epochs, self.every_s, self.enabled = steps_per_epoch, epochs, every_s, enabled
        self.tty = sys.stdout.isatty()

    def begin(self, epoch: int) -> None:
        self.epoch, self.start, self.last = epoch, time.monotonic(), time.monotonic()
        if self.enabled:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
            self.bar = keras.utils.Progbar(self.steps_per_epoch) if self.tty else None

    def update(self, step: int, logs: dict) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step, list(logs.items()))
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            rate = step / (now - self.start)
            print(f"epoch {self.epoch + 1}/{self.epochs} step {step}/{self.steps_per_epoch}: {rate:.2f} steps/s, "
                  f"ETA {_clock((self.steps_per_epoch - step) / rate)}, {_metrics(logs)}", flush=True)
            self.last = now

    def end(self, step: int, logs: dict) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step, list(logs.items()), finalize=True)
        else:
            seconds = time.monotonic() - self.start
            print(f"epoch {self.epoch + 1}/{self.epochs}: {step} steps in {_clock(seconds)} ({step / seconds:.2f} "
                  f"steps/s), {_metrics(logs)}", flush=True)


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def _metrics(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class Deadline:
    """The --time-budget: minutes of wall-clock time from the first step of this process (None: no budget)."""

    def __init__(self, minutes: float | None):
        self.minutes, self.start = minutes, None

    def passed(self) -> bool:
        self.start = self.start or time.monotonic()
        return self.minutes is not None and time.monotonic() - self.start > 60.0 * self.minutes


# ---------------------------------------------------------------------------
# The epochs
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class Loop:
    """What the epochs of a run share, across its phases: the training iterator, the validation dataset (or None),
    steps per epoch and per compiled call, the time budget, progress, the callbacks run at each epoch's end
    (keras.callbacks.CallbackList; the chief's writes) and the backup, saved last. Each phase brings its own
    StepFunctions to `epoch`."""

    iterator: object
    val: object
    steps_per_epoch: int
    steps_per_call: int
    deadline: Deadline
    progress: Progress
    callbacks: keras.callbacks.CallbackList
    backup: object
    global_step: int = 0  # steps trained since the run began: the data position a resumed run restarts from

    def epoch(self, epoch: int, functions: StepFunctions) -> bool:
        """Train with `functions`, validate and save epoch `epoch` (0-based); returns False when the time budget
        ended training.

        Raises NonFiniteLoss at the first step whose loss is not finite, before anything of the epoch is saved.
        """
        self.callbacks.on_epoch_begin(epoch)
        self.progress.begin(epoch)
        totals, step, stopped = {}, 0, False
        while step < self.steps_per_epoch and not stopped:
            in_call = min(self.steps_per_call, self.steps_per_epoch - step)
            done = functions.train(self.iterator, in_call, self.deadline.passed())
            stopped = done.pop(STOP) > 0
            loss = logs_from_totals(done, functions.theta)["loss"]
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the training loss became {loss} at epoch {epoch + 1}, step {step + in_call}; "
                                    f"nothing of that epoch was saved: --resume with a lower --lr "
                                    f"(now {float(functions.optimizer.learning_rate):g})")
            totals, step, self.global_step = add(totals, done), step + in_call, self.global_step + in_call
            self.callbacks.on_train_batch_end(step - 1)
            self.progress.update(step, logs_from_totals(totals, functions.theta))
        logs = logs_from_totals(totals, functions.theta)
        with functions.averaged_weights():  # validated and saved: the weights a user gets (the average, if kept)
            if self.val is not None:
                logs.update({f"val_{k}": v for k, v in functions.validate(self.val).items()})
            self.progress.end(step, logs)
            if stopped and self.progress.enabled:
                print(f"time budget of {self.deadline.minutes:g} min reached: epoch {epoch + 1} ended after {step} "
                      "steps", file=sys.stderr)
            self.callbacks.on_epoch_end(epoch, logs)  # history.csv and checkpoints first,
        # then the backup, of the trained weights and the optimizer (its average included): an epoch counts as done
        # only once all of it is written
        self.backup.save(epoch + 1, self.global_step)
        return not stopped
