"""train.py --init-from: a fine-tuning run starts from exactly the given model's weights (its step-0 predictions
are the source's), takes the model's architecture, input size and depth scale, refuses a flag that contradicts
them or a file that is not this project's model in one sentence, records the new data's mean depth, and resumes
from its backup like any run: the one run here is also test_mixtures.py's mixture run (its log, its record of the
datasets, evaluate.py's table), and a copy of it stopped after epoch 1 resumes inside a pass with several steps per
call, to the uninterrupted run's weights."""
import csv
import json
import shutil

import keras
import numpy as np
import pytest

import evaluate
import finetune
import loop
import model as models
import nyu_layouts as L
import rundir
import train as train_py
from depth import DepthScale
from conftest import randomize
from mixtures import choice_counts

SCALE = DepthScale("metres", 0.2, 8.0)  # not train.py's defaults, so adopting them shows
RUN = ["--bs", "2", "--tb-images", "0", "--steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    files = L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2))
    return str(L.write_zip(tmp_path_factory.mktemp("data") / "nyu_data.zip", files))


MIXTURE_DEPTHS_M = (4.0, 6.0)  # every training pixel of dataset a, of b: 8-bit PNG values 102 and 153, exactly


@pytest.fixture(scope="module")
def two_zips(tmp_path_factory):
    """Two nyu_data.zip datasets of 8 training frames of one depth each (MIXTURE_DEPTHS_M, neither the source's 2 m)
    and 4 test frames."""
    root = tmp_path_factory.mktemp("zips")
    zips = []
    for name, seed, depth_m in (("a", 1, MIXTURE_DEPTHS_M[0]), ("b", 3, MIXTURE_DEPTHS_M[1])):
        train = [(rgb, np.full(depth.shape, depth_m, np.float32)) for rgb, depth in L.make_frames(8, seed=seed)]
        zips.append(str(L.write_zip(root / f"{name}.zip", L.densedepth_files(train, L.make_frames(4, seed=seed + 1)))))
    return zips


def randomized(net, seed=0):
    """`net` with random biases and BatchNorm statistics too (an output bias of 0.123 among them), as a trained
    model has: a bias re-initialised from the data, or statistics left out, would change its predictions."""
    randomize(net, seed)
    models.set_output_bias(net, 0.123)
    return net


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained-looking UNet of 4 filters at 32x48 in metres over 0.2-8 m, recording a mean depth of 2 m."""
    net = randomized(models.build_unet(input_hw=(32, 48), base_filters=4, depth_scale=SCALE))
    models.record_train_mean_depth(net, 2.0)
    path = tmp_path_factory.mktemp("source") / "source.keras"
    net.save(path)
    return path


def images(seed=0):
    return np.random.default_rng(seed).random((2, 32, 48, 3), dtype=np.float32)


def run(capsys, *flags):
    code = train_py.run([str(f) for f in flags])
    return code, capsys.readouterr().err


def test_a_fine_tuning_run_on_a_mixture_starts_from_the_source_says_its_data_and_resumes_to_the_uninterrupted_weights(
        source, two_zips, tmp_path, capsys, monkeypatch):
    """A fine-tuning run of 2 epochs on two datasets at weights 3 and 1. Its first step starts from the source's
    weights exactly (the output bias is not set from the data); it records the model's flags, the datasets (args.json,
    the model file, evaluate.py's table, the log) and the new data's mean depth. A copy of its folder as it stood
    once epoch 1 was saved (what a run stopped then leaves) resumes at step 2, each dataset inside its pass, 2 steps
    per call: its weights come from the backup, not from --init-from again, and it ends where the run itself did."""
    a, b = two_zips
    real_train, seen = loop.StepFunctions.train, []

    def first_step_sees(self, iterator, steps_in_call, stop):
        if not seen:
            seen.append(self.net.predict(images(), verbose=0))  # the weights training starts from
        return real_train(self, iterator, steps_in_call, stop)

    run_dir, stopped = tmp_path / "run", tmp_path / "stopped"
    real_save = rundir.Backup.save

    def save_and_copy(self, epoch, step):
        real_save(self, epoch, step)
        if epoch == 1:  # epoch 1 is now saved whole: the folder a run stopped here would leave
            shutil.copytree(run_dir, stopped)

    monkeypatch.setattr(loop.StepFunctions, "train", first_step_sees)
    monkeypatch.setattr(rundir.Backup, "save", save_and_copy)
    # the model's own values given again are no contradiction, nor encoder weights (say, from a recipe file)
    code, err = run(capsys, "--init-from", source, "--data", f"{a}:weight=3", "--data", b, *RUN, "--lr", "1e-3",
                    "--model", "unet", "--base-filters", "4", "--input-size", "32", "48", "--encoder-weights",
                    "imagenet", "--steps-per-execution", "2", "--tb-images", "1", "--epochs", "2", "--out", run_dir)
    assert code == 0, err
    np.testing.assert_array_equal(seen[0], keras.models.load_model(source).predict(images(), verbose=0),
                                  err_msg="the first step starts from the source's weights")
    assert f"starting from every weight of {source}" in err and "output bias set" not in err
    assert f"--encoder-weights imagenet is not used: every weight comes from {source}" in err
    training = f"8 frames of {a} [train] (weight 0.75) + 8 frames of {b} [train] (weight 0.25)"
    assert f"on {training}, 2 steps x 2 epochs; validating on 4 frames of {a} [test] + 4 frames of {b} [test]" in err, \
        "the log names each dataset, its weight and its validation split"
    saved = json.loads((run_dir / "args.json").read_text())
    assert {k: saved[k] for k in ("init_from", "model", "input_size", "base_filters", "depth_mode", "min_depth_m",
                                  "max_depth_m", "encoder_weights", "data")} == {
        "init_from": str(source), "model": "unet", "input_size": [32, 48], "base_filters": 4, "depth_mode": "metres",
        "min_depth_m": 0.2, "max_depth_m": 8.0, "encoder_weights": "none", "data": [f"{a}:weight=3", b]}
    final = models.load_model(run_dir / "model.keras")
    assert models.depth_scale_of(final) == SCALE
    assert models.train_data_of(final) == training, "the model file records its datasets"
    # the new training frames' mean depth, not the source's 2 m: the first 8 batches of 2 hold n_a frames of a
    # (the mixture's first 16 draws) at 4 m and the rest of b at 6 m
    n_a = int(choice_counts(0, [0.75, 0.25], 16)[0])
    assert 0 < n_a < 16, "both datasets are in the first batches"
    assert models.train_mean_depth_of(final) == pytest.approx((n_a * 4.0 + (16 - n_a) * 6.0) / 16, rel=1e-6)
    assert evaluate.main(evaluate.parse_args(["--model", str(run_dir / "model.keras"), "--data", a, "--limit", "2",
                                              "--out", str(tmp_path / "eval")])) == 0
    assert (f"Training frames of {run_dir / 'model.keras'}, whose mean depth is their fair baseline: {training}."
            in (tmp_path / "eval" / "table.md").read_text()), "evaluate.py's table names the training datasets"

    with open(stopped / "history.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0], "the copy holds epoch 1 alone"
    epoch_1 = keras.models.load_model(stopped / "checkpoints" / "last.keras").predict(images(), verbose=0)
    seen.clear()
    monkeypatch.setattr(rundir.Backup, "save", real_save)
    code, err = run(capsys, "--out", stopped, "--resume")
    assert code == 0 and "resuming" in err, err
    np.testing.assert_array_equal(seen[0], epoch_1, err_msg="the resumed run starts from its backup's weights")
    assert not np.array_equal(seen[0], keras.models.load_model(source).predict(images(), verbose=0)), \
        "the resumed run does not start from --init-from again"
    resumed = keras.models.load_model(stopped / "model.keras").get_weights()
    expected = keras.models.load_model(run_dir / "model.keras").get_weights()
    for got, want in zip(resumed, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    """(a trained-looking MobileNet-0.75 transfer model, the file it is saved in), built once for both precisions."""
    net = randomized(models.build_transfer("mobilenet-0.75", input_hw=(32, 48), decoder_width=0.25))
    path = tmp_path_factory.mktemp("transfer") / "transfer.keras"
    net.save(path)
    return net, path


@pytest.mark.parametrize("mixed", [False, True])
def test_a_transfer_model_is_copied_weight_for_weight_under_either_precision(transfer, mixed):
    """init_net rebuilds every layer under the global dtype policy: in float32 the copy predicts exactly as the
    source; under --mixed-precision its layers compute in bfloat16 (on CPUs) from the same weights."""
    net, path = transfer
    train_py.set_precision(mixed)
    try:
        copy = finetune.init_net(path)
    finally:
        train_py.set_precision(False)
    assert finetune.flags_of(copy) == {"model": "transfer", "encoder": "mobilenet-0.75", "decoder_width": 0.25,
                                       "input_size": [32, 48], "depth_mode": "inverse", "min_depth_m": 0.1,
                                       "max_depth_m": 10.0}
    for got, want in zip(copy.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert copy.get_layer("conv2").dtype_policy.name == ("mixed_bfloat16" if mixed else "float32")
    assert copy.output.dtype == "float32"
    if not mixed:
        np.testing.assert_array_equal(copy.predict(images(), verbose=0), net.predict(images(), verbose=0))


@pytest.mark.parametrize("flags, sentence", [
    (["--input-size", "64", "64"], "error: --input-size 64 64 contradicts --init-from {src}, whose input-size is "
                                   "32 48: drop --input-size, the model fixes it"),
    (["--depth-mode", "inverse"], "error: --depth-mode inverse contradicts --init-from {src}, whose depth-mode is "
                                  "metres: drop --depth-mode, the model fixes it"),
    (["--model", "transfer"], "error: --model transfer contradicts --init-from {src}, whose model is unet: drop "
                              "--model, the model fixes it"),
    (["--freeze-encoder-epochs", "1"], "error: --freeze-encoder-epochs needs a transfer model, and --init-from {src} "
                                       "is a unet"),
])
def test_a_flag_contradicting_the_model_is_one_sentence(source, tiny_data, tmp_path, capsys, flags, sentence):
    code, err = run(capsys, "--init-from", source, "--data", tiny_data, *RUN, *flags, "--out", tmp_path / "run")
    assert code == 2 and err.strip().splitlines()[-1] == sentence.format(src=source)
    assert not (tmp_path / "run" / "args.json").exists()


def test_a_file_that_is_not_this_project_s_model_is_one_sentence(tiny_data, tmp_path, capsys):
    notes = tmp_path / "notes.keras"
    notes.write_text("not a model")
    image = keras.Input((32, 48, 3))
    foreign = tmp_path / "foreign.keras"
    keras.Model(image, keras.layers.Conv2D(1, 3, padding="same", name="head")(image), name="theirs").save(foreign)
    for path, sentence in [
        (notes, f"error: --init-from: {notes} is not a Keras model file (a .keras zip or an .h5); pass a model "
                "train.py saved"),
        (foreign, f"error: --init-from {foreign}: model 'theirs' ends in Conv2D 'head', not a DepthOutput, so it does "
                  "not record its depth scale; build it with this model.py"),
        (tmp_path / "missing.keras", f"error: no model file at {tmp_path / 'missing.keras'}"),
    ]:
        code, err = run(capsys, "--init-from", path, "--data", tiny_data, *RUN, "--out", tmp_path / "run")
        assert code == 2 and err.strip().splitlines()[-1] == sentence and "Traceback" not in err
