"""train.py: a tiny UNet learns, saves, reloads; a killed run resumes; tf.distribute through the real command line.

Training runs in-process through train.run (the command line's entry point) except where a separate process is
what is tested: a SIGKILL, and logical CPU devices, which TensorFlow fixes before its first op."""
import csv
import functools
import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import model as models
import nyu_layouts as L
import rundir
import train as train_py
from depth import DepthScale, pack_target
from loop import StepFunctions
from conftest import ROOT, built_once

TINY = ["--model", "unet", "--base-filters", "4", "--input-size", "32", "48", "--bs", "2", "--tb-images", "2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """DenseDepth's nyu_data.zip layout with 8 train and 4 test frames of 48x64 (one path for every xdist worker, as
    the shared run's args.json records it)."""
    def write(folder):
        folder.mkdir()
        L.write_zip(folder / "nyu_data.zip", L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2)))
    return str(built_once(tmp_path_factory, "train_tiny_data", write) / "nyu_data.zip")


# The tiny run that learns, trained once: test_tiny_unet_learns_saves_and_reloads checks it, and it is the
# uninterrupted twin of test_killed_run_resumes_to_the_uninterrupted_weights's killed run (--ema-momentum: the moving
# average too must come back from the backup, the optimizer's variables; 3 steps an epoch of 4-step passes,
# augmentation on: the killed run resumes inside a pass; --steps-per-execution 2: each epoch's 3 steps are a call
# of 2 and a call of 1, counted by the optimizer's iterations).
LEARNS = [*TINY, "--epochs", "3", "--steps-per-epoch", "3", "--steps-per-execution", "2", "--lr", "3e-3",
          "--ema-momentum", "0.9"]


@pytest.fixture(scope="module")
def learned_run(tiny_data, tmp_path_factory):
    return built_once(tmp_path_factory, "train_learned_run",
                      lambda run_dir: train(*LEARNS, "--data", tiny_data, "--out", run_dir))


def train(*flags, capsys=None):
    """train.run(flags) in this process; returns (exit code, stderr) when given pytest's capsys, asserting 0 if not."""
    code = train_py.run([str(f) for f in flags])
    if capsys is None:
        assert code == 0
        return code, ""
    return code, capsys.readouterr().err


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_unet_learns_saves_and_reloads(tiny_data, learned_run):
    run_dir = learned_run
    rows = history(run_dir)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < losses[0], losses
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("val_loss", "val_delta1", "val_abs_rel", "ssim"))
    saved = json.loads((run_dir / "args.json").read_text())
    assert saved["base_filters"] == 4 and saved["data"] == tiny_data
    for name in ("model.keras", "checkpoints/best.keras", "checkpoints/last.keras"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.partial.keras")), "no temporary checkpoint may be left behind"
    assert list((run_dir / "logs" / "depth_maps").glob("events.out.tfevents.*"))

    final = keras.models.load_model(run_dir / "model.keras")  # no custom_objects: model.py registered its layer
    assert not final.compiled  # the inference artefact; checkpoints keep the optimizer, and nothing else compiled
    last = keras.models.load_model(run_dir / "checkpoints" / "last.keras")
    assert last.compiled and last.loss is None and last.optimizer.amsgrad and last.optimizer.use_ema
    assert int(last.optimizer.iterations) == 3 * 3  # 3 epochs of 3 steps, each a call of 2 and a call of 1
    x = np.random.default_rng(0).random((2, 32, 48, 3), dtype=np.float32)
    np.testing.assert_array_equal(final.predict(x, verbose=0), last.predict(x, verbose=0))
    assert models.depth_scale_of(final).to_config() == {"mode": "inverse", "min_depth_m": 0.1, "max_depth_m": 10.0}
    # The training frames' mean depth in metres, recorded in every model file: 8 batches of 2 are each of the 8
    # training frames twice, read as the 8-bit PNGs nyu_data.zip holds, area-resized to 32x48 (which keeps the mean
    # up to the holes' weighting).
    recorded = models.train_mean_depth_of(final)
    assert recorded == models.train_mean_depth_of(last) == models.train_mean_depth_of(models.load_model(
        run_dir / "checkpoints" / "best.keras"))
    stored = [np.round(depth * 25.5) / 25.5 for _, depth in L.make_frames(8, seed=1)]
    assert recorded == pytest.approx(np.mean(np.concatenate([d[d > 0] for d in stored])), rel=1e-3)


def test_target_statistics_mean_depth_is_in_metres_not_inverse_depth():
    """The mean target is in the network's units (here DenseDepth's 10 m / depth, the output bias's start); the mean
    depth, the fair baseline the model records, is in metres; both over the valid pixels only."""
    scale = DepthScale("inverse", 0.1, 10.0)
    depth = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)[None, ..., None]  # [1, 2, 2, 1], one hole
    mask = depth > 0
    y_true = pack_target(np.where(mask, scale.encode(depth), 0.0), mask)
    dataset = tf.data.Dataset.from_tensors((np.zeros((1, 2, 2, 3), np.float32), y_true)).repeat()
    batches, pixels, mean_target, mean_depth_m = train_py.target_statistics(dataset, scale, batches=3)
    assert (batches, pixels) == (3, 9.0)
    assert mean_target == pytest.approx((10 / 1 + 10 / 2 + 10 / 4) / 3)
    assert mean_depth_m == pytest.approx((1 + 2 + 4) / 3)


def test_killed_run_resumes_to_the_uninterrupted_weights(tiny_data, learned_run, tmp_path, capsys):
    """A real SIGKILL during epoch 2 (or 3), then --resume: each epoch logged once, every model file loads, and the
    weights are those of the same run uninterrupted (learned_run; the backup holds the optimizer, its moving average
    and the data position). The resumed epoch starts at step 3 (or 6) of 4-step passes, inside a pass, with the
    colour augmentation applied in the step (several steps per call: test_finetune.py's resumed mixture)."""
    run_dir = tmp_path / "run"
    flags = [*LEARNS, "--data", tiny_data]
    proc = subprocess.Popen([sys.executable, "train.py", *flags, "--out", str(run_dir)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "history.csv").exists() and len(history(run_dir)) >= 1:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)  # during epoch 2 or its writes: no chance to clean up
    proc.wait()
    assert 1 <= len(history(run_dir)) < 3

    code, err = train("--out", run_dir, "--resume", capsys=capsys)
    assert code == 0 and "resuming" in err
    assert [int(r["epoch"]) for r in history(run_dir)] == [0, 1, 2]
    x = np.random.default_rng(0).random((2, 32, 48, 3), dtype=np.float32)
    resumed = keras.models.load_model(run_dir / "model.keras")
    for name in ("checkpoints/last.keras", "checkpoints/best.keras"):
        keras.models.load_model(run_dir / name).predict(x, verbose=0)
    expected = keras.models.load_model(learned_run / "model.keras")
    for got, want in zip(resumed.get_weights(), expected.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    code, err = train("--out", run_dir, capsys=capsys)
    assert code == 2 and "already holds a run" in err  # a finished run is not overwritten


@pytest.mark.parametrize("loss_scaled", [False, True])
def test_ema_momentum_validates_and_saves_the_moving_average_and_trains_on(loss_scaled):
    """--ema-momentum M: after steps with weights w1, w2, w3 the average is w1, then M * average + (1 - M) * w;
    loop.StepFunctions.averaged_weights holds it in the model (what validation and the saved files see) and gives the
    trained weights back, which the next step goes on from. Also inside the LossScaleOptimizer that Keras wraps
    around the optimizer under mixed_float16 (GPUs)."""
    args = train_py.parse_args([*TINY, "--ema-momentum", "0.5", "--lr", "1e-2"])
    net = train_py.build_net(args.model, input_hw=args.input_size, depth_scale=DepthScale(),
                             base_filters=args.base_filters)
    train_py.compile_net(net, lr=args.lr, ema_momentum=args.ema_momentum)
    if loss_scaled:
        net.compile(optimizer=keras.optimizers.LossScaleOptimizer(net.optimizer))
    steps = StepFunctions(net, tf.distribute.get_strategy(), DepthScale(), args.theta)
    rng = np.random.default_rng(0)
    batch = (rng.random((2, 32, 48, 3), dtype=np.float32),
             pack_target(rng.uniform(1.0, 100.0, (2, 32, 48, 1)), np.ones((2, 32, 48, 1))))
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    trained = []
    for _ in range(3):
        steps.train(iterator, 1, stop=False)
        trained.append([v.numpy() for v in net.trainable_variables])
    with pytest.raises(ValueError, match="steps_in_call must be 1 to 1, got 2"):  # its steps_per_call is 1
        steps.train(iterator, 2, stop=False)
    average = trained[0]
    for weights in trained[1:]:
        average = [0.5 * a + 0.5 * w for a, w in zip(average, weights)]
    assert not np.allclose(average[0], trained[-1][0])  # the test can tell the two apart
    with steps.averaged_weights():
        for got, want in zip(net.trainable_variables, average):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    for got, want in zip(net.trainable_variables, trained[-1]):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    net.optimizer.finalize_variable_values(net.trainable_variables)  # what train.py does before model.keras
    for got, want in zip(net.trainable_variables, average):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--data", "/no/such/dataset"], "error: /no/such/dataset does not exist"),
    (["--val-split", "validation"], "has no 'validation' split"),
])
def test_bad_input_is_one_sentence(tiny_data, tmp_path, capsys, flags, message):
    code, err = train("--data", tiny_data, *TINY, "--out", tmp_path / "run", *flags, capsys=capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_flag_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_py.parse_args(["--epochs", "0"])
    assert exit_info.value.code == 2 and "--epochs must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("break_data, message", [
    (lambda files: [files.pop(name) for name in list(files) if name.startswith("data/nyu2_train/") and
                    name.endswith(".png")], "no frame of {zip} [train] is readable (8 tried); the first: {zip}: "),
    (lambda files: files.update({name: L.depth_png8(np.zeros((48, 64), np.float32)) for name in list(files)
                                 if name.startswith("data/nyu2_train/") and name.endswith(".png")}),
     "no valid depth pixel in the first 16 frames of {zip} [train]"),
])
def test_a_split_with_nothing_to_learn_stops_before_writing_anything(tmp_path, capsys, break_data, message):
    files = L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2))
    break_data(files)
    data_zip = L.write_zip(tmp_path / "nyu_data.zip", files)
    code, err = train(*TINY, "--data", data_zip, "--out", tmp_path / "run", "--epochs", "1", capsys=capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: " + message.format(zip=data_zip))
    assert not (tmp_path / "run").exists()  # no args.json, so the same command can run again once fixed


def test_skipped_frames_are_counted_once_and_a_mirrored_mixed_precision_run_saves_a_float32_output(tmp_path, capsys):
    """Frames without depth are skipped, each counted once, and validation never runs out of data; the run is
    --strategy mirrored --mixed-precision through train.run, in this process (one CPU: one replica, the same
    MirroredStrategy code path; two logical CPUs and the command line's own logging are test_distributed's
    test_command_line_on_two_logical_cpus_names_them_and_prints_no_tensorflow_logs)."""
    files = L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2))
    del files["data/nyu2_train/room_1_out/3.png"]  # one training frame's depth is missing
    del files["data/nyu2_test/00002_depth.png"]  # and one test frame's
    data_zip = L.write_zip(tmp_path / "nyu_data.zip", files)
    try:
        code, err = train(*TINY, "--data", data_zip, "--out", tmp_path / "run", "--epochs", "1", "--steps-per-epoch",
                          "3", "--tb-images", "0", "--strategy", "mirrored", "--mixed-precision", capsys=capsys)
    finally:
        train_py.set_precision(False)  # the global policy, for the tests that build models after this one
    assert code == 0, err
    # the training frame is read by the output-bias pass and again in the epoch: still one frame
    assert f"epoch 1: skipped 1 unreadable frame(s) of {data_zip} [train], e.g. {data_zip}: " in err, "train skip"
    assert f"epoch 1: skipped 1 unreadable frame(s) of {data_zip} [test]" in err, "test skip"
    assert "ran out of data" not in err  # 3 readable test frames: 2 validation batches of 2, not 4 frames' worth
    assert "1 replica(s)" in err and "mixed_bfloat16" in err, "the strategy's replicas and the policy, said"
    assert "training on 1 CPU (MirroredStrategy): /CPU:0\n" in err, "the device, named"
    net = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert net.get_layer("output_conv").compute_dtype == "bfloat16" and net.outputs[0].dtype == "float32", \
        "mixed precision inside, a float32 output"
    assert np.isfinite(net.predict(np.zeros((1, 32, 48, 3), np.float32), verbose=0)).all()


def test_freeze_encoder_epochs_trains_in_two_phases_the_frozen_one_keeping_the_initial_encoder(tiny_data, tmp_path,
                                                                                                 capsys, monkeypatch):
    """--freeze-encoder-epochs 1 of 2 epochs (train.py's phases): the first epoch changes the decoder only (the
    encoder as the second phase unfreezes it is the one the seed built, BatchNormalization's statistics included,
    and every decoder layer has trained); the second trains the encoder too; each epoch is logged once."""
    arch = {"encoder": "mobilenet-0.75", "encoder_weights": "none", "decoder_width": 0.5}
    real, unfrozen = models.set_encoder_trainable, []  # the weights as the second phase unfreezes the encoder

    def unfreeze_seen(net, trainable):
        if trainable:
            unfrozen.append({layer.name: layer.get_weights() for layer in net.layers})
        real(net, trainable)

    monkeypatch.setattr(models, "set_encoder_trainable", unfreeze_seen)
    run_dir = tmp_path / "run"
    code, err = train("--model", "transfer", *[f"--{k.replace('_', '-')}={v}" for k, v in arch.items()],
                      "--input-size", "32", "48", "--bs", "2", "--val-split", "none", "--data", tiny_data,
                      "--lr", "1e-2", "--out", run_dir, "--steps-per-epoch", "2", "--epochs", "2",
                      "--freeze-encoder-epochs", "1", capsys=capsys)
    assert code == 0 and "epochs 1-1: encoder frozen" in err and "epochs 2-2: encoder trainable" in err, "two phases"
    assert [int(r["epoch"]) for r in history(run_dir)] == [0, 1]
    keras.utils.set_random_seed(0)  # --seed's default: the weights the run started from
    initial = models.build_transfer(input_hw=(32, 48), **arch)
    trained = models.load_model(run_dir / "model.keras")
    encoder = models.encoder_layer_names(trained)
    # MobileNet's first convolution with its BatchNormalization and ReLU, 13 blocks of a depthwise and a pointwise
    # convolution each with theirs, and the zero padding before each of its 4 strided depthwise convolutions
    assert len(encoder) == 3 + 13 * 6 + 4
    assert len(unfrozen) == 1, "the encoder is unfrozen once"
    for name in encoder:
        for before, after in zip(initial.get_layer(name).get_weights(), unfrozen[0][name], strict=True):
            np.testing.assert_array_equal(before, after, err_msg=f"{name} changed while frozen")
    decoder = [layer.name for layer in initial.layers if layer.get_weights() and layer.name not in encoder]
    assert {"conv2", "conv3"} <= set(decoder)  # the decoder's first and last convolutions among them
    for name in decoder:
        assert not all(np.array_equal(before, after) for before, after in zip(initial.get_layer(name).get_weights(),
                                                                              unfrozen[0][name], strict=True)), \
            f"the frozen phase trains the decoder's {name}"
    assert not all(np.array_equal(initial.get_layer(name).get_weights()[0], trained.get_layer(name).get_weights()[0])
                   for name in encoder if initial.get_layer(name).get_weights()), "the second phase trains the encoder"


def test_depth_in_the_wrong_unit_stops_with_advice_and_the_advised_run_ends_early_but_whole_on_its_time_budget(
        tmp_path, capsys):
    """TUM's 16-bit depth (5000 per metre) read as NYU's millimetres: depths of 1-7.75 m come out 5 to 38.75 m, and
    training used to go on ("training frames' mean depth 17 m"). Read as millimetres only depths up to 2 m (10 m
    as read) lie in 0.1-10 m: about a fifth of these ramps. The advised command then trains, and its --time-budget
    ends it inside its first epoch, which is still validated, logged and saved."""
    frames = L.make_frames(4, seed=1)
    L.write_pairs(tmp_path / "tum" / "train", frames, "png", units_per_metre=5000)
    L.write_pairs(tmp_path / "tum" / "test", L.make_frames(4, seed=2), "png", units_per_metre=5000)
    run_dir = tmp_path / "run"
    code, err = train(*TINY, "--data", tmp_path / "tum", "--out", run_dir, "--epochs", "1", capsys=capsys)
    as_mm = np.concatenate([depth[depth > 0] for _, depth in frames]) * 5.0
    fraction = np.mean((as_mm >= 0.1) & (as_mm <= 10.0))
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: only {fraction:.0%} of the valid depth in the first 4 frames of {tmp_path / 'tum' / 'train'} [train] "
        "lies in 0.1-10 m as read (16-bit PNG in millimetres); pass --depth-units-per-metre 5000"), "the advice"
    assert not run_dir.exists()
    code, err = train(*TINY, "--data", tmp_path / "tum", "--out", run_dir, "--depth-units-per-metre", "5000",
                      "--epochs", "5", "--steps-per-epoch", "500", "--time-budget", "0.001", "--tb-images", "0",
                      capsys=capsys)
    assert code == 0, err
    assert "time budget of 0.001 min reached" in err and err.count("time budget") == 1, "the time budget, said once"
    device = "1 GPU: /GPU:0" if tf.config.list_logical_devices("GPU") else "1 CPU: /CPU:0"  # TensorFlow's first
    assert f"training on {device}\n" in err, "the device, named"
    rows = history(run_dir)
    assert len(rows) == 1 and rows[0]["val_loss"], "the cut-short epoch is still validated and logged"
    assert (run_dir / "model.keras").is_file() and (run_dir / "checkpoints" / "best.keras").is_file(), "and saved"


def test_a_run_saved_before_newer_flags_resumes_with_their_defaults(tmp_path, capsys):
    """An args.json written before --ema-momentum, --init-from, --tfds-data-dir and --depth-units-per-metre existed
    resumes with each at its default, what the run trained with (and args.json then records them)."""
    args = train_py.parse_args([*TINY, "--out", str(tmp_path)])
    newer = {"ema_momentum": 0.0, "init_from": None, "tfds_data_dir": None, "depth_units_per_metre": None}
    old = {k: v for k, v in vars(args).items() if k not in (*newer, "given")}
    (tmp_path / "args.json").write_text(json.dumps(old))
    resumed = rundir.run_arguments(train_py.parse_args(["--out", str(tmp_path), "--resume"]), train_py.SAFE_ON_RESUME,
                                   parse=functools.partial(train_py.parse_args, parser_class=rundir.RefusingParser))
    assert {k: getattr(resumed, k) for k in newer} == newer and resumed.base_filters == 4 and resumed.resume
