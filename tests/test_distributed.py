"""Training on several replicas computes what one device computes on the same global batch: MirroredStrategy over
two logical CPUs (one process for the session: train.py's reference run, then single steps), and
MultiWorkerMirroredStrategy with two train.py workers on 127.0.0.1 (free ports), each in its own process (logical
devices and the cluster are fixed before TensorFlow's first op), every process with a timeout.

Weights are compared as a whole, |w_a - w_b| / |w_a| over all of them: Adam's first steps move a weight by about
the learning rate times the sign of its gradient, so a weight whose gradient is within rounding of zero can move
either way on two devices, while the network as a whole agrees to a few 1e-5. The step itself is compared with
plain SGD, whose update is proportional to the gradient, so that a gradient summed instead of averaged over
replicas (the bug of Keras's fit with a scalar loss) would show.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import data
import loop
import model  # noqa: F401  registers DepthOutput
import nyu_layouts as L
import rundir
import train as train_main
from benchmarks.multiworker import free_ports
from conftest import ROOT, built_once

TINY = ["--model", "unet", "--base-filters", "4", "--input-size", "32", "48", "--tb-images", "0", "--no-augment",
        "--bs", "4"]
SCHEDULE = ["--epochs", "2", "--steps-per-epoch", "4"]  # the runs compared below: 8 Adam steps, two epochs
TIMEOUT_S = 240  # per process; a normal run takes a few seconds plus TensorFlow's start-up


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    files = L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2))
    return str(L.write_zip(tmp_path_factory.mktemp("data") / "nyu_data.zip", files))


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def weights(path):
    return np.concatenate([w.ravel() for w in keras.models.load_model(path).get_weights()])


def relative_distance(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def worker(index, hosts, *flags, out):
    """train.py (its own command line) as worker `index` of the cluster of `hosts` (addresses on 127.0.0.1), writing
    to `out`; returns the process."""
    config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
    command = [sys.executable, "train.py", *map(str, flags), "--strategy", "multiworker", "--out", str(out)]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, "TF_CONFIG": json.dumps(config)}, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def workers(*flags, outs):
    """Two train.py workers on free ports of 127.0.0.1, worker i writing to outs[i]; returns the processes."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    return [worker(index, hosts, *flags, out=out) for index, out in enumerate(outs)]


def finish(*procs):
    """(exit code, stderr) of each process, waiting at most TIMEOUT_S."""
    errs = [p.communicate(timeout=TIMEOUT_S)[1] for p in procs]
    return [(p.returncode, err) for p, err in zip(procs, errs)]


TWO_CPUS_SCRIPT = textwrap.dedent("""
    import json, sys
    import train  # first: its own first import, quiet, hides TensorFlow's start-up logs (as in train.py itself)
    import keras, numpy as np
    import tensorflow as tf
    import loop
    from depth import DepthScale
    from layouts import open_source

    # train.py's command line, whose --strategy mirrored --logical-devices 2 splits the CPU (TensorFlow's first op)
    code = train.run(sys.argv[2:])
    if code:
        sys.exit(code)

    # Then SGD steps of loop.StepFunctions on those two logical CPUs and on one device. A strategy's collective keys
    # start at _collective_key_base (TensorFlow's setting for tests): this second MirroredStrategy over the same
    # devices would otherwise reuse the keys of train.run's, whose shapes differ, and its collectives would abort.
    tf.distribute.MirroredStrategy._collective_key_base = 1000
    # 48x64: the frames' own 4:3, so no aspect crop changes the batch the tolerance below was measured on
    args = train.parse_args(["--model", "unet", "--base-filters", "4", "--input-size", "48", "64", "--bs", "4",
                             "--no-augment", "--data", sys.argv[1]])
    split, scale = open_source(args.data).split("train"), DepthScale()

    def plain_net():  # no BatchNormalization: the loss and gradient arithmetic alone
        image = keras.Input((48, 64, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(image)
        return keras.Model(image, keras.layers.Conv2D(1, 3, padding="same", bias_initializer="ones")(x))

    out, two = {}, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one: a second would reuse collective keys
    for kind, steps in [("unet", 1), ("plain", 3)]:
        for name, strategy in [("one", tf.distribute.get_strategy()), ("two", two)]:
            keras.utils.set_random_seed(0)
            with strategy.scope():
                net = plain_net() if kind == "plain" else train.build_net(
                    "unet", input_hw=(48, 64), depth_scale=scale, synchronized_bn=name == "two", base_filters=4)
                net.compile(optimizer=keras.optimizers.SGD(0.05))
            step = loop.StepFunctions(net, strategy, scale, theta=0.1)
            iterator = iter(loop.distributed_dataset(strategy, split, 4, True, input_hw=(48, 64), target_hw=(48, 64),
                                                     depth_scale=scale, augmentation=None))
            losses = [loop.logs_from_totals(step.train(iterator, 1, False), 0.1)["loss"] for _ in range(steps)]
            out[f"{kind} {name}"] = {"replicas": strategy.num_replicas_in_sync, "losses": losses,
                                     "weights": np.concatenate([w.ravel() for w in net.get_weights()]).tolist()}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def two_cpus(tiny_data, tmp_path_factory):
    """One process on two logical CPUs (they must be set before TensorFlow's first op), for the session, shared by
    pytest-xdist's workers (tiny_data is the same seeded zip on each): train.py's command line (train.run, after
    `import train` as train.py starts) trains the workers' reference, an uninterrupted MirroredStrategy run of
    SCHEDULE (2 epochs of 4 steps) in run/, with TF_CPP_MIN_LOG_LEVEL left to the script; then the same process steps
    one and two replicas (TWO_CPUS_SCRIPT). Keeps its standard error in stderr.txt and the steps in steps.json."""
    def build(out):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the script quiets TensorFlow
        flags = [*TINY, "--data", tiny_data, *SCHEDULE, "--out", out / "run", "--strategy", "mirrored",
                 "--logical-devices", "2"]
        proc = subprocess.run([sys.executable, "-c", TWO_CPUS_SCRIPT, tiny_data, *map(str, flags)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (out / "stderr.txt").write_text(proc.stderr)
        (out / "steps.json").write_text(proc.stdout.strip().splitlines()[-1])

    return built_once(tmp_path_factory, "two_cpus", build)


@pytest.fixture(scope="module")
def mirrored_run(two_cpus):
    """The uninterrupted train.py run on two logical CPUs (two_cpus's run/)."""
    return two_cpus / "run"


def test_mirrored_step_on_two_replicas_equals_one_device(two_cpus):
    """SGD steps of loop.StepFunctions on one and two replicas of the same global batch (in two_cpus's process,
    after its train.py run): three steps of a network without BatchNormalization agree to 1e-6 (the replicas'
    reduction itself), and the UNet's first step (synchronized BatchNormalization) gives the same loss to 1e-4 and
    the same weights to 1e-4 relative or 5e-4 absolute. Keras's synchronized BatchNormalization takes the variance
    as E[x^2] - E[x]^2, whose float32 rounding depends on the order of the sums (one device's two-pass variance
    differs from it), and its 1 / sqrt(variance + 1e-3) amplifies that in a low-variance channel: on these uint8
    frames one first-layer channel's weights (7 of 74,549) differed by up to 2.4e-4 after the step, also with
    synchronized BatchNormalization on the one device. Further UNet steps drift apart by about as much per step at
    this learning rate."""
    out = json.loads((two_cpus / "steps.json").read_text())
    assert [out[f"unet {name}"]["replicas"] for name in ("one", "two")] == [1, 2]
    for kind, tolerance, weights_atol in (("plain", 1e-6, 1e-6), ("unet", 1e-4, 5e-4)):
        one, two = out[f"{kind} one"], out[f"{kind} two"]
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=tolerance)
        np.testing.assert_allclose(two["weights"], one["weights"], rtol=tolerance, atol=weights_atol)
    assert out["plain one"]["losses"][2] != out["plain one"]["losses"][0]  # the steps did train


def test_command_line_on_two_logical_cpus_names_them_and_prints_no_tensorflow_logs(mirrored_run):
    """train.py's command line in its own process (logical devices must be set before TensorFlow's first op; the
    workers below run train.py itself), with TF_CPP_MIN_LOG_LEVEL left to the script: its log names the two replicas
    and their devices, and no TensorFlow C++ log line appears in the whole process's standard error (the step test's
    replicas included)."""
    err = (mirrored_run.parent / "stderr.txt").read_text()
    assert "parameters, float32, 2 replica(s)) on " in err
    assert "training on 2 CPUs (MirroredStrategy): /CPU:0, /CPU:1\n" in err  # the devices, named
    assert not [line for line in err.splitlines() if line[:5] in ("I0000", "W0000", "E0000")]  # no C++ logs


def test_command_line_mirrored_equals_one_device(tiny_data, mirrored_run, tmp_path):
    """train.py on one device (in this process) and on two logical CPUs: the same first loss (1e-4) and final weights
    after 8 Adam steps within a relative distance of 2e-4: the runs differ in BatchNormalization's variance
    arithmetic (two-pass on one device, E[x^2] - E[x]^2 synchronized over replicas; see the step test above), which
    Adam's normalized steps carry on (6.3e-5 measured on this test's uint8 frames; 1.3e-4 after 18 steps)."""
    # validating nothing, which does not touch the training losses and weights compared
    assert train_main.run([*TINY, "--data", tiny_data, *SCHEDULE, "--val-split", "none",
                           "--out", str(tmp_path / "one")]) == 0
    first = [float(history(run)[0]["loss"]) for run in (tmp_path / "one", mirrored_run)]
    assert first[1] == pytest.approx(first[0], rel=1e-4)
    assert relative_distance(weights(tmp_path / "one" / "model.keras"), weights(mirrored_run / "model.keras")) < 2e-4


def test_two_workers_lose_one_resume_to_the_mirrored_weights_and_only_the_chief_writes(tiny_data, mirrored_run,
                                                                                         tmp_path):
    """Two workers train; worker 1 is killed once both have backed up epoch 0, so the chief stops with one `error:`
    line; both resume from that backup and end with the history and weights of the uninterrupted run on two local
    replicas, written by the chief only. (One scenario for both: every launch of a worker pair pays TensorFlow's
    start-up twice.) Worker 1 is relaunched at once, as a cluster manager would, and waits for the chief's relaunch:
    its start-up overlaps the chief's wait for the coordination service to notice the loss."""
    chief, other = tmp_path / "chief", tmp_path / "worker1"
    # A killed worker's heartbeats stop, and the coordination service tells the chief within its 10 s heartbeat
    # timeout, after which the chief ends at once. A collective timeout shorter than that raced it, and when the
    # timeout won, TensorFlow held the chief ~25 s longer before it could end; 30 s lets the heartbeats win.
    flags = [*TINY, "--data", tiny_data, *SCHEDULE, "--collective-timeout", "30"]
    procs = workers(*flags, outs=[chief, other])
    # CheckpointManager writes its "checkpoint" list last: once both exist, both backups hold epoch 0 whole
    backups = [rundir.backup_dir(chief, 0) / "checkpoint", rundir.backup_dir(other, 1) / "checkpoint"]
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline and procs[0].poll() is None and not all(path.exists() for path in backups):
        time.sleep(0.02)
    assert procs[0].poll() is None, "the chief ended before a worker could be lost"
    procs[1].send_signal(signal.SIGKILL)
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]  # the relaunched pair's cluster
    relaunched = worker(1, hosts, *flags, "--resume", out=other)
    start = time.time()
    (code0, err0), _ = finish(*procs)
    lines = [line for line in err0.splitlines() if line.startswith("error:")]
    assert code0 == 2 and len(lines) == 1 and "lost contact with another worker" in lines[0], err0[-2000:]
    assert "Traceback" not in err0 and time.time() - start < TIMEOUT_S

    (code0, err0), (code1, err1) = finish(worker(0, hosts, *flags, "--resume", out=chief), relaunched)
    assert (code0, code1) == (0, 0), (err0[-2000:], err1[-2000:])
    assert "2 replica(s), worker 0" in err0 and "2 replica(s), worker 1" in err1
    assert "output bias set" not in err0  # the weights came from the backup of epoch 0, not a fresh start
    assert [int(r["epoch"]) for r in history(chief)] == [0, 1]
    assert [r["loss"] for r in history(chief)] == [r["loss"] for r in history(mirrored_run)]
    assert relative_distance(weights(mirrored_run / "model.keras"), weights(chief / "model.keras")) < 1e-5
    for name in ("model.keras", "args.json", "history.csv", "checkpoints/best.keras", "backup/checkpoint"):
        assert (chief / name).exists(), name
    assert not other.exists() or not list(other.glob("*.keras")) and not (other / "history.csv").exists()
    assert not (tmp_path / "worker1.worker1-backup").exists()  # the worker's backup is gone once the run is done


def test_a_worker_with_another_batch_size_is_one_sentence(tiny_data, tmp_path):
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    flags = [*TINY, "--data", tiny_data, "--epochs", "1", "--steps-per-epoch", "2"]
    procs = [worker(index, hosts, *flags, "--bs", bs, out=tmp_path / f"w{index}") for index, bs in enumerate("42")]
    for code, err in finish(*procs):
        assert code == 2 and "error: the workers disagree on --bs" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "w0" / "args.json").exists()


def test_the_overhead_benchmark_reads_the_epoch_lines_train_py_prints(capsys, monkeypatch):
    """benchmarks/multiworker.py times train.py by the steps/s of its last epoch line (stdout not a terminal)."""
    import loop
    from benchmarks.multiworker import last_epoch_steps_per_s

    clock = iter([100.0, 100.0, 104.0])  # begin (start, last), then end: 10 steps in 4 s
    monkeypatch.setattr(loop.time, "monotonic", lambda: next(clock))
    progress = loop.Progress(steps_per_epoch=10, epochs=2, every_s=30.0)
    progress.tty = False
    progress.begin(1)
    progress.end(10, {"loss": 0.5})
    out = capsys.readouterr().out
    assert "epoch 2/2: 10 steps in 00:00:04 (2.50 steps/s), loss: 0.5000" in out
    assert last_epoch_steps_per_s("epoch 1/2: 10 steps in 00:00:09 (1.11 steps/s), loss: 1\n" + out) == 2.5


def test_two_workers_shards_are_augmented_as_one_device(tiny_data):
    """With augmentation on, the two input pipelines of two workers (shard_select, per-replica batch 2) give, side by
    side, exactly one device's batches of 4, over two passes: a frame's augmentation depends on the frame and the
    pass, not on which worker reads it (data.frame_seed)."""
    from layouts import open_source

    split = open_source(tiny_data).split("train")
    options = {"input_hw": (32, 48), "target_hw": (32, 48), "training": True, "seed": 3}
    one = list(data.make_dataset(split, batch_size=4, **options).repeat(2))
    shards = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        select = loop.shard_select(context, per_replica_batch=2, training=True)
        shards.append(list(data.make_dataset(split, batch_size=2, select=select, **options).repeat(2)))
    assert len(one) == len(shards[0]) == len(shards[1]) == 4  # 8 frames: two batches of 4 per pass, two passes
    for k, (rgb, y_true) in enumerate(one):
        np.testing.assert_array_equal(rgb, np.concatenate([shards[0][k][0], shards[1][k][0]]))
        np.testing.assert_array_equal(y_true, np.concatenate([shards[0][k][1], shards[1][k][1]]))
    assert not np.array_equal(one[0][0], one[2][0])  # the second pass reshuffles and augments anew


@pytest.mark.parametrize("tf_config, said", [
    ("{'cluster': {}}", "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
    ('["127.0.0.1:1234"]', "(['127.0.0.1:1234'])"),
])
def test_a_tf_config_that_is_not_a_json_object_is_one_sentence_naming_it(tf_config, said, tmp_path, capsys,
                                                                        monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert train_main.run(["--strategy", "multiworker", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: TF_CONFIG is not a JSON object {said}; set it as {{\"cluster\": {{\"worker\": [\"host-a:12345\", "
        "\"host-b:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}} with this worker's index (quoted in "
        "single quotes for the shell), or unset it on one machine"]
    assert not (tmp_path / "run").exists()


def test_a_port_already_in_use_is_one_sentence_naming_it(tmp_path, capsys, monkeypatch):
    """TensorFlow said only "Could not start gRPC server" (an UnknownError) when this worker's port was taken."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [other] = free_ports(1)
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}", f"127.0.0.1:{other}"]},
                                                    "task": {"type": "worker", "index": 0}}))
        assert train_main.run(["--strategy", "multiworker", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: port {port} of this worker's address 127.0.0.1:{port} (worker 0 in TF_CONFIG) is already in use by "
        "another process, perhaps an earlier run; stop it, or give this worker a free port in TF_CONFIG on every "
        "machine"]
    assert not (tmp_path / "run").exists()
