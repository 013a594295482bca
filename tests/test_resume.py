"""train.py survives every interruption (issue 12): each test stops a run one way (a full disk, Ctrl-C, a second
process, a non-finite loss, a stale half-written file, new flags), then checks the state a --resume finds: every
epoch logged once, model.keras and both checkpoints loading. Failures that cannot be caused without root are
injected where the real one would happen (an OSError(ENOSPC) from the history's write, a KeyboardInterrupt from a
training step); the real SIGKILL is in test_train.py. A resumed run's data starts at its step's pass and place, reading
none of the frames before it (issue 27); that a run resumed mid-pass ends with the uninterrupted run's weights is
checked against an uninterrupted twin in test_train.py (one dataset, after a SIGKILL) and test_finetune.py (a
fine-tuning run on a mixture)."""
import contextlib
import csv
import dataclasses
import errno
import io
import json
import os
import shlex
import shutil

import keras
import numpy as np
import pytest

import callbacks
import data
import layouts
import loop
import model  # noqa: F401  registers DepthOutput
import nyu_layouts as L
import rundir
import train as train_py

TINY = ["--model", "unet", "--base-filters", "4", "--input-size", "32", "48", "--bs", "2", "--tb-images", "0",
        "--steps-per-epoch", "2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    files = L.densedepth_files(L.make_frames(8, seed=1), L.make_frames(4, seed=2))
    return str(L.write_zip(tmp_path_factory.mktemp("data") / "nyu_data.zip", files))


# One epoch of 3 steps without validation and with a progress line per step, trained once after a first attempt on a
# full disk: test_a_run_started_on_a_full_disk_leaves_no_args_json checks that attempt,
# test_progress_lines_when_output_is_not_a_terminal the run's output, and the tests that resume or interrupt a run
# after its first epoch start from copies of it.
ONE_EPOCH = [*TINY, "--epochs", "1", "--steps-per-epoch", "3", "--log-every", "0.001", "--val-split", "none"]


@dataclasses.dataclass(frozen=True)
class OneEpochRun:
    run_dir: object  # the run folder: tests copy it (copy_of) and never change it
    out: str  # its stdout
    full_disk: tuple  # the first attempt's (exit code, stderr, whether it left args.json)


@pytest.fixture(scope="module")
def one_epoch_run(tiny_data, tmp_path_factory):
    """ONE_EPOCH on tiny_data, run first with every whole-file write failing (no space left on the device), then
    again with the same command."""
    run_dir = tmp_path_factory.mktemp("one_epoch") / "run"
    command = [*ONE_EPOCH, "--data", tiny_data, "--out", str(run_dir)]

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(rundir.partial_path(path)))

    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(io.StringIO()) as err:
        patch.setattr(rundir, "write_text_whole", full)
        code = train_py.run(command)
    full_disk = (code, err.getvalue(), (run_dir / "args.json").exists())
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert train_py.run(command) == 0
    return OneEpochRun(run_dir, out.getvalue(), full_disk)


def copy_of(one_epoch_run, run_dir):
    """A copy at run_dir of the one-epoch run, resumable there (--resume takes --out from the command line)."""
    shutil.copytree(one_epoch_run.run_dir, run_dir)
    return run_dir


def train(capsys, *flags):
    """train.run(flags) in this process: (exit code, stdout, stderr)."""
    code = train_py.run([str(f) for f in flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def epochs(run_dir):
    with open(run_dir / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def assert_whole(run_dir):
    """model.keras and both checkpoints load and predict the same finite depth."""
    x = np.random.default_rng(0).random((1, 32, 48, 3), dtype=np.float32)
    final = keras.models.load_model(run_dir / "model.keras").predict(x, verbose=0)
    assert np.isfinite(final).all()
    np.testing.assert_array_equal(final, keras.models.load_model(run_dir / "checkpoints" / "last.keras").predict(x, verbose=0))
    keras.models.load_model(run_dir / "checkpoints" / "best.keras")
    assert not list(run_dir.rglob("*.partial*"))


def test_a_second_process_a_full_disk_ctrl_c_and_kills_while_saving_stop_in_one_sentence_and_resume_finishes_once(
        one_epoch_run, tmp_path, capsys, monkeypatch):
    """A copy of the one-epoch run (no validation split), continued to 2 epochs through every way a run stops: a
    second process is refused at once, naming the first; a --resume with --epochs 2 --lr 5e-4 (safe flags, applied
    and recorded) meets a disk that fills at epoch 2's history; Ctrl-C stops the next at epoch 2's first step. Each
    stop is one sentence saying what is saved and how to continue. The next --resume removes a kill's stale
    half-written checkpoint and finishes with each epoch once, whole and without val_ columns; one changing --bs or
    --seed is refused; a kill while the final model.keras was written is resumed by writing it again from the backup,
    training nothing; and a --resume of the finished run says it is complete."""
    run_dir = copy_of(one_epoch_run, tmp_path / "run")
    with rundir.RunLock(run_dir):  # another open file description: flock refuses it as it would another process
        code, _, err = train(capsys, "--out", run_dir, "--resume", "--epochs", "2")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: {run_dir} is in use by process {os.getpid()} (it holds {run_dir}/train.lock); wait for it to end "
        "or stop it, then --resume"), "a second process is refused"
    assert epochs(run_dir) == [0]

    real = callbacks.write_history

    def full_at_epoch_2(path, rows):
        if len(rows) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(rundir.partial_path(path)))
        real(path, rows)

    monkeypatch.setattr(callbacks, "write_history", full_at_epoch_2)
    code, _, err = train(capsys, "--out", run_dir, "--resume", "--epochs", "2", "--lr", "5e-4")
    assert "resume: --epochs 2 (was 1)" in err and "resume: --lr 0.0005 (was 0.0001)" in err, "safe flags applied"
    assert code == 2 and "Traceback" not in err, "a full disk is a user error"
    assert err.strip().splitlines()[-1] == (
        f"error: could not write {run_dir}/history.partial.csv: No space left on device; epochs 1-1 are saved: free "
        f"space (or make {run_dir} writable), then continue with python train.py --out {run_dir} --resume"), \
        "the full disk's sentence"
    monkeypatch.undo()

    def interrupted(self, iterator, steps, stop):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.StepFunctions, "train", interrupted)
    code, _, err = train(capsys, "--out", run_dir, "--resume")
    assert code == 130 and "Traceback" not in err, "Ctrl-C exits 130"
    assert err.strip().splitlines()[-1] == (f"interrupted: epochs 1-1 are saved in {run_dir}; continue with "
                                            f"python train.py --out {run_dir} --resume"), "Ctrl-C's sentence"
    monkeypatch.undo()

    (run_dir / "checkpoints" / "best.partial.keras").write_bytes(b"")  # what a kill while saving leaves
    code, _, err = train(capsys, "--out", run_dir, "--resume")
    assert code == 0 and f"removed {run_dir}/checkpoints/best.partial.keras" in err, "the stale file removed"
    assert epochs(run_dir) == [0, 1], "each epoch logged once"
    with open(run_dir / "history.csv") as f:
        assert not [column for column in next(csv.reader(f)) if column.startswith("val_")], "no validation columns"
    saved = json.loads((run_dir / "args.json").read_text())
    assert (saved["epochs"], saved["lr"]) == (2, 5e-4), "the safe flags recorded in args.json"
    assert_whole(run_dir)

    code, _, err = train(capsys, "--out", run_dir, "--resume", "--bs", "4", "--model", "unet", "--seed", "3")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --resume cannot change --bs, --seed"), \
        "other flags refused"

    # Killed while writing model.keras after the last epoch: every epoch is in the backup, model.keras is not.
    finished = model.load_model(run_dir / "model.keras").get_weights()
    (run_dir / "model.keras").rename(run_dir / "model.partial.keras")
    code, _, err = train(capsys, "--out", run_dir, "--resume")
    assert code == 0 and f"removed {run_dir}/model.partial.keras" in err and "Traceback" not in err
    assert epochs(run_dir) == [0, 1], "no epoch trained again"
    for saved, expected in zip(model.load_model(run_dir / "model.keras").get_weights(), finished, strict=True):
        np.testing.assert_array_equal(saved, expected, err_msg="model.keras written again from the backup")

    code, _, err = train(capsys, "--out", run_dir, "--resume")
    assert code == 0 and f"{run_dir} is complete (2 of 2 epochs)" in err and epochs(run_dir) == [0, 1], \
        "a finished run is complete"


def test_a_run_started_on_a_full_disk_leaves_no_args_json(one_epoch_run):
    """one_epoch_run's first attempt, on a full disk: one sentence, and no args.json, so the same command (which
    one_epoch_run then ran to the end) is a new run, not a --resume."""
    code, err, left_args_json = one_epoch_run.full_disk
    assert code == 2 and "args.partial.json: No space left on device; no epoch is saved yet" in err
    assert not left_args_json
    assert epochs(one_epoch_run.run_dir) == [0] and (one_epoch_run.run_dir / "model.keras").is_file()


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_state(tiny_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = train(capsys, *TINY, "--data", tiny_data, "--out", run_dir, "--epochs", "3", "--lr", "1e12",
                         "--steps-per-epoch", "4")
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: the training loss became ") and "lower --lr (now 1e+12)" in last
    assert "at epoch 1, step " in last  # Adam moves every weight by ~lr at once: the first epoch fails
    assert not (run_dir / "model.keras").exists() and not (run_dir / "checkpoints" / "last.keras").exists()


def test_progress_lines_when_output_is_not_a_terminal(one_epoch_run):
    out = one_epoch_run.out
    lines = [line for line in out.splitlines() if line.startswith("epoch 1/1 step ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/1 step 1/3", "epoch 1/1 step 2/3", "epoch 1/1 step 3/3"]
    assert all(" steps/s, ETA " in line and "loss: " in line for line in lines)


def test_a_damaged_args_json_is_one_sentence(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "args.json").write_text("")
    code, _, err = train(capsys, "--out", tmp_path / "run", "--resume")
    assert code == 2 and f"error: {tmp_path}/run/args.json is damaged" in err


@pytest.mark.parametrize("edit, sentence", [
    ({"bs": "2"}, '"bs": "2" is not what --bs holds; write "bs": 2, or start a new run with another --out'),
    ({"epochs": 2.5}, "\"epochs\": 2.5 is refused (argument --epochs: invalid int value: '2.5'); correct it, or start "
                      "a new run with another --out"),
    ({"model": "resnet"}, "\"model\": \"resnet\" is refused (argument --model: invalid choice: 'resnet' (choose from "
                          "'depth-anything', 'transfer', 'unet')); correct it, or start a new run with another --out"),
    ({"lr": -1.0}, '"lr": -1.0 is refused (--lr, --decoder-width, --time-budget, --log-every and --collective-timeout '
                   'must be positive and --theta not negative); correct it, or start a new run with another --out'),
    ({"no_augment": "yes"}, "\"no_augment\": \"yes\" is refused (argument --no-augment: ignored explicit argument "
                            "'yes'); correct it, or start a new run with another --out"),
    ({"epochs": None}, '"epochs": null is not what --epochs holds; write "epochs": 20, or start a new run with '
                       'another --out'),
    ({"batch": 2}, '"batch" is no argument of this script; remove it, or start a new run with another --out'),
])
def test_a_hand_edited_args_json_is_checked_by_the_command_lines_rules(tiny_data, tmp_path, capsys, edit, sentence):
    """args.json's values go through train.parse_args as a command line and must read back unchanged: a wrong type,
    an unknown model or key, a negative rate are one sentence naming args.json and the key (exit 2), nothing written."""
    run_dir = tmp_path / "run"
    saved = {**vars(train_py.parse_args([*TINY, "--data", tiny_data, "--out", str(run_dir), "--epochs", "1"])),
             "resume": False}
    del saved["given"]
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({**saved, **edit}))
    before = sorted(run_dir.iterdir())
    code, _, err = train(capsys, "--out", run_dir, "--resume")
    assert code == 2 and err.strip().splitlines() == [f"error: {run_dir / 'args.json'}: {sentence}"]
    assert sorted(run_dir.iterdir()) == before and json.loads((run_dir / "args.json").read_text()) == {**saved, **edit}


def test_a_saved_run_with_the_parsers_own_values_passes_the_check(tiny_data, tmp_path):
    args = train_py.parse_args([*TINY, "--data", tiny_data, "--out", str(tmp_path), "--input-size", "32", "48",
                                "--min-depth-m", "0.5", "--lr", "1e-3", "--data=@weird-name", "--no-augment"])
    saved = {k: v for k, v in vars(args).items() if k not in ("given", "out", "resume")}
    rundir.check_saved_arguments(tmp_path / "args.json", json.loads(json.dumps(saved)),
                                 lambda argv: train_py.parse_args(argv, rundir.RefusingParser))


@pytest.mark.parametrize("flag", ["--lr", "--bs", "--epochs"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_zero_or_negative_rate_batch_and_epochs_are_refused_on_the_command_line(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_py.parse_args([f"{flag}={value}"])
    assert exit_info.value.code == 2 and f"{flag}" in capsys.readouterr().err


def test_the_printed_resume_command_is_quoted_for_the_shell(tiny_data, tmp_path, capsys, monkeypatch):
    """--out "my runs/run (1)" was printed bare, which pastes as a shell syntax error."""
    run_dir = tmp_path / "my runs" / "run (1)"

    def interrupted(self, iterator, steps, stop):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop.StepFunctions, "train", interrupted)
    code, _, err = train(capsys, *TINY, "--data", tiny_data, "--out", run_dir, "--epochs", "1")
    assert code == 130
    command = f"python train.py --out '{run_dir}' --resume"
    assert err.strip().splitlines()[-1] == f"interrupted: no epoch is saved yet in {run_dir}; continue with {command}"
    assert shlex.split(command)[3] == str(run_dir)


def counting(split):
    """(a copy of `split` whose reader records every frame key it reads, that list of keys)."""
    reads = []

    def reader(key):
        reads.append(key)
        return split.reader(key)

    return dataclasses.replace(split, reader=reader), reads


def test_a_resumed_pipeline_starts_at_its_pass_and_place_reading_no_frame_before_it(tiny_data):
    """8 frames in batches of 2 are 4 batches a pass. Resumed at batch 23 (pass 5, its last batch), the first
    iteration reads exactly that batch's 2 frames (a skip would decode the 46 before them first) and gives the
    uninterrupted run's batch 23; the next iterations are its passes 6 and 7."""
    split = layouts.open_source(tiny_data).split("train")
    options = dict(batch_size=2, input_hw=(32, 48), target_hw=(32, 48), training=True, seed=4)
    uninterrupted = list(data.make_dataset(split, **options).repeat(8))
    counted, reads = counting(split)
    resumed = data.make_dataset(counted, start_batch=23, **options)
    first = list(resumed)
    assert len(first) == 1 and len(reads) == 2
    assert sorted(reads) == sorted(counted.keys[int(i)] for i in data.pass_order(4, 5, 8)[6:])
    for got, want in zip(first + list(resumed.repeat(2)), uninterrupted[23:], strict=True):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
