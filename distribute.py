"""tf.distribute for train.py: the strategy of --strategy, the cluster of a multi-worker run, which worker this
process is, and the check that every worker trains the same thing.

A multi-worker cluster comes from TF_CONFIG (TensorFlow's format), or from Slurm's environment when TF_CONFIG is
unset and SLURM_JOB_ID is set. Worker 0 (or the task of a "chief" job) is the chief: it alone writes the run
directory; the others keep only their own backup (train.py).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import zlib

import tensorflow as tf

from rundir import KEPT_BACKUPS as KEPT

STRATEGIES = ("default", "mirrored", "multiworker")
DEFAULT_COLLECTIVE_TIMEOUT_S = 300.0  # a lost worker stops the others after this long instead of hanging
# What a collective raises on the others when a worker is lost (its heartbeats stop, or --collective-timeout).
LOST_WORKER = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
               tf.errors.CancelledError)


TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host-a:12345", "host-b:12345"]}, "task": {"type": "worker", '
                     '"index": 0}}')  # TensorFlow's format: every worker's address, and which one this process is


def cluster_resolver():
    """The cluster of a multi-worker run: TF_CONFIG's, else Slurm's (SLURM_JOB_ID set), else TF_CONFIG's empty
    one (a single worker). Pure Python: safe to call before TensorFlow's first op. ValueError naming TF_CONFIG
    and its format when it is not a JSON object."""
    if "TF_CONFIG" not in os.environ and "SLURM_JOB_ID" in os.environ:
        return tf.distribute.cluster_resolver.SlurmClusterResolver()
    if "TF_CONFIG" in os.environ:
        try:
            config = json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as err:
            config = err
        if not isinstance(config, dict):
            raise ValueError(f"TF_CONFIG is not a JSON object ({config}); set it as {TF_CONFIG_EXAMPLE} with this "
                             "worker's index (quoted in single quotes for the shell), or unset it on one machine")
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def check_port_free(resolver) -> None:
    """ValueError naming the port when this worker's address in the cluster (TF_CONFIG's or Slurm's) is taken by
    another process: TensorFlow says only "Could not start gRPC server". A probe bind, as the gRPC server binds it
    (SO_REUSEADDR: a closed connection's lingering port counts as free)."""
    if resolver is None or not resolver.task_type:
        return
    address = resolver.cluster_spec().task_address(resolver.task_type, resolver.task_id)
    port = int(address.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise ValueError(f"port {port} of this worker's address {address} ({resolver.task_type} "
                             f"{resolver.task_id} in TF_CONFIG) is already in use by another process, perhaps an "
                             "earlier run; stop it, or give this worker a free port in TF_CONFIG on every machine"
                             ) from None


def worker_index(resolver) -> int:
    """This process's place among the workers, 0 for the chief (and for a run without a cluster)."""
    if resolver is None or not resolver.task_type:
        return 0
    has_chief = "chief" in resolver.cluster_spec().jobs
    if resolver.task_type == "chief":
        return 0
    return int(resolver.task_id) + int(has_chief)


def make_strategy(name: str, logical_devices: int = 0, resolver=None,
                  timeout_s: float = DEFAULT_COLLECTIVE_TIMEOUT_S) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name` (one of STRATEGIES); call before any other TensorFlow work (devices and
    the cluster are fixed then). logical_devices > 0 splits the CPU into that many devices (to try mirrored
    without GPUs); a collective that waits longer than timeout_s (a lost worker) fails instead of hanging.
    ValueError, before TensorFlow starts its server, when this worker's port is taken (check_port_free)."""
    if logical_devices:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * logical_devices)
    if name == "multiworker":
        resolver = resolver or cluster_resolver()
        check_port_free(resolver)
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver,
            communication_options=tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s))
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy([d.name for d in gpus or tf.config.list_logical_devices("CPU")])
    return tf.distribute.get_strategy()


def gather_rows(strategy: tf.distribute.Strategy, row: list[int]):
    """Every replica's `row` of integers, as a numpy array [replicas, len(row)] (in a tf.function: collectives run
    eagerly are slow, and TensorFlow warns so)."""
    # autograph=False: nothing to convert, and AutoGraph cannot read these nested lambdas' source (it warns so)
    return tf.function(lambda: strategy.gather(strategy.run(lambda: tf.constant([row], tf.int64)), axis=0),
                       autograph=False)().numpy()


def check_same_everywhere(strategy: tf.distribute.Strategy, fields: dict) -> None:
    """ValueError naming the fields (flag name -> value, any JSON value) on which the workers of a multi-worker
    strategy disagree; every worker raises it, so all stop. Nothing to check with one process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    mine = [zlib.crc32(json.dumps(value, sort_keys=True).encode()) for value in fields.values()]
    everyone = gather_rows(strategy, mine)
    differ = [name for i, name in enumerate(fields) if len(set(everyone[:, i])) > 1]
    if differ:
        raise ValueError(f"the workers disagree on {', '.join(differ)}: launch every worker with the same flags "
                         "and the same data (and --resume all of them, or none)")


def common_epoch(strategy: tf.distribute.Strategy, epochs: list[int]) -> int:
    """The latest of `epochs` (the completed epochs this worker's backups hold) that every worker holds, 0 if none:
    a worker lost between the workers' backups of one epoch leaves the others one epoch ahead."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return max(epochs, default=0)
    mine = (sorted(epochs, reverse=True) + [-1] * KEPT)[:KEPT]
    everyone = gather_rows(strategy, mine)
    common = set.intersection(*(set(row) for row in everyone.tolist())) - {-1}
    return max(common, default=0)


def worker_fields(flags: dict, splits) -> dict:
    """What every worker must agree on before anything is built or read (check_same_everywhere's fields): `flags`
    (flag name as in args.json -> value; "data" is left to the frames) and the data (frame counts, first and last
    frames of each of `splits`, None skipped)."""
    splits = [s for s in splits if s is not None]
    return {**{f"--{k.replace('_', '-')}": value for k, value in flags.items() if k != "data"},
            "the data": [[len(s), s.frame_name(0), s.frame_name(len(s) - 1)] for s in splits]}


def describe_devices(strategy: tf.distribute.Strategy) -> str:
    """The devices `strategy` trains on, for the run's log: "1 CPU: /CPU:0" (one device: TensorFlow's first GPU,
    else the CPU), "2 GPUs (MirroredStrategy): /GPU:0, /GPU:1"; a multi-worker strategy counts every worker's
    replicas and names this worker's devices ("4 GPUs (MultiWorkerMirroredStrategy), this worker's: /GPU:0, ...")."""
    if isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
        devices = strategy.extended.worker_devices
    else:
        devices = [(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name]
    names = ["/" + device.rsplit("device:", 1)[-1] for device in devices]  # /job:.../device:GPU:0 -> /GPU:0
    count = strategy.num_replicas_in_sync
    kind = names[0][1:].split(":")[0] + ("s" if count > 1 else "")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return f"{count} {kind} ({type(strategy).__name__}), this worker's: {', '.join(names)}"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return f"{count} {kind} ({type(strategy).__name__}): {', '.join(names)}"
    return f"{count} {kind}: {', '.join(names)}"
