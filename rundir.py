"""A run directory's state, safe against a kill at any moment: files written whole or not at all, history.csv with
one row per completed epoch, the backup --resume continues from, and the lock that keeps a second process out.

Every file --resume reads (args.json, history.csv, the checkpoints, the backup) is written under a temporary
name in the same folder and renamed once whole (os.replace is atomic on POSIX); the backup is TensorFlow's
CheckpointManager, which writes the same way. The order of an epoch's writes is history.csv and checkpoints
first, the backup last, so the backup never gets ahead of the history: a resumed run drops history rows of
epochs the backup does not hold, and trains them again.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import io
import json
import os
import shlex
import sys
from pathlib import Path

import tensorflow as tf

PARTIAL = ".partial"  # the infix of files being written (best.partial.keras); stale ones are removed at start
LOCK = "train.lock"


class RunStateError(ValueError):
    """A run directory's state cannot be used as it is (damaged file, run in use); the message says what to do."""


def partial_path(path: Path) -> Path:
    """The temporary name `path` is written under: best.keras -> best.partial.keras (the suffix kept for Keras)."""
    return path.with_name(f"{path.stem}{PARTIAL}{path.suffix}")


def write_whole(path: Path, write) -> None:
    """Call write(temporary path), then rename the result to `path`: `path` is the old file or the new one whole."""
    partial = partial_path(Path(path))
    write(partial)
    os.replace(partial, path)


def write_text_whole(path: Path, text: str) -> None:
    """Write `text` to `path` whole (see write_whole), flushed to disk before the rename."""
    def write(partial):
        with open(partial, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    write_whole(path, write)


def remove_partials(run_dir: Path) -> list[Path]:
    """Delete the files a killed run left half-written (*.partial*); returns them."""
    stale = [p for p in Path(run_dir).rglob(f"*{PARTIAL}*") if p.is_file()]
    for path in stale:
        path.unlink()
    return stale


# ---------------------------------------------------------------------------
# args.json and history.csv
# ---------------------------------------------------------------------------

def read_json(path: Path) -> dict:
    """The dict in `path`; RunStateError naming the file when it is empty or damaged."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunStateError(f"{path} is damaged ({err}); restore it from a copy, or start the run again in a "
                            "new --out") from None


def read_history(path: Path) -> list[dict]:
    """history.csv's rows as {column: float} (an empty cell is left out); [] when there is no file yet."""
    if not Path(path).exists():
        return []
    try:
        with open(path) as f:
            return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    except ValueError as err:
        raise RunStateError(f"{path} is damaged ({err}); delete its bad rows, then --resume") from None


def write_history(path: Path, rows: list[dict]) -> None:
    """Write history.csv whole: one row per epoch, "epoch" first, then the columns in sorted order (CSVLogger's)."""
    columns = ["epoch", *sorted({k for row in rows for k in row} - {"epoch"})]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "epoch": int(row["epoch"])} for row in rows)
    write_text_whole(path, text.getvalue())


# ---------------------------------------------------------------------------
# The run's arguments
# ---------------------------------------------------------------------------

# args.json keys of runs saved before a flag was renamed -> today's name, so those runs still resume.
_RENAMED_FLAGS = {"min_depth": "min_depth_m", "max_depth": "max_depth_m"}


def flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


class RefusingParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise RunStateError instead of printing the usage and exiting: the command
    line's own rules (types, choices, ranges), applied to a saved run's arguments (check_saved_arguments)."""

    def error(self, message):
        raise RunStateError(message)


REPEATED_FLAGS = ("data",)  # flags given once per value, saved as a list: train.py's --data (a mixture)


def saved_argv(saved: dict) -> list[str]:
    """The command line that gives `saved` (args.json's keys and values): a flag per key, true as the bare flag,
    false and null left out (the flag's default), a list as its items (a key of REPEATED_FLAGS: the flag once per
    item). A value is attached with '=' so that one starting with '-' or '@' (an @FILE to the parser) is read as a
    value."""
    argv = []
    for key, value in saved.items():
        if value is True:
            argv.append(flag(key))
        elif isinstance(value, list) and key in REPEATED_FLAGS:
            argv += [f"{flag(key)}={item}" for item in value]
        elif isinstance(value, list):
            argv += [flag(key), *map(str, value)]
        elif value is not None and value is not False:
            argv.append(f"{flag(key)}={value}")
    return argv


def _refusal(parse, saved: dict) -> str | None:
    """Why parse (a parse_args raising RunStateError) refuses `saved` as a command line, or None if it takes it."""
    try:
        parse(saved_argv(saved))
    except RunStateError as err:
        return str(err)
    return None


def check_saved_arguments(path: Path, saved: dict, parse) -> None:
    """RunStateError, one sentence naming `path` and the key, unless `saved` (args.json's keys and values, --out and
    --resume left out) is what the command line itself would give: every key a flag, every value one the parser
    accepts (its types, choices and checks: parse is the script's parse_args with a RefusingParser) and reads back
    unchanged (a hand-edited "bs": "2" or "epochs": 2.5 is refused, with the value to write instead)."""
    fix = "correct it, or start a new run with another --out"
    unknown = [key for key in saved if key not in vars(parse([]))]
    if unknown:
        raise RunStateError(f'{path}: "{unknown[0]}" is no argument of this script; remove it, or start a new run '
                            "with another --out")
    reason = _refusal(parse, saved)
    if reason is not None:  # the key whose removal makes the rest acceptable is the one to name
        culprit = next((k for k in saved if _refusal(parse, {n: v for n, v in saved.items() if n != k}) is None), None)
        if culprit is None:
            raise RunStateError(f"{path} holds arguments the command line refuses ({reason}); {fix}")
        raise RunStateError(f'{path}: "{culprit}": {json.dumps(saved[culprit])} is refused ({reason}); {fix}')
    parsed = vars(parse(saved_argv(saved)))
    for key, value in saved.items():
        same_type = type(value) is type(parsed[key]) or (type(value) is int and type(parsed[key]) is float)
        if value != parsed[key] or not same_type:
            raise RunStateError(f'{path}: "{key}": {json.dumps(value)} is not what {flag(key)} holds; write '
                                f'"{key}": {json.dumps(parsed[key])}, or start a new run with another --out')


def run_arguments(args, safe_on_resume, chief: bool = True, parse=None) -> argparse.Namespace:
    """The run's arguments. With --resume, the saved ones of the run in --out with the flags given now that are
    safe to change (the names in safe_on_resume, each said on one line), or ValueError naming the others; else `args`,
    refusing an --out that already holds a run. Writes nothing (save_run_arguments does, once training can start).
    A worker other than the chief (chief=False) writes no args.json and may have none: it uses what it was given.
    parse: the script's parse_args(argv) with a RefusingParser, to check the saved arguments by the command line's
    rules (check_saved_arguments); None checks nothing."""
    run_dir = Path(args.out)
    saved_path = run_dir / "args.json"
    mine = {k: v for k, v in vars(args).items() if k != "given"}
    if not args.resume:
        if chief and saved_path.exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
        return argparse.Namespace(**mine)
    if not saved_path.exists():
        if not chief:
            return argparse.Namespace(**mine)
        raise FileNotFoundError(f"{saved_path} does not exist, so there is no run to resume in {run_dir}")
    saved = read_json(saved_path)
    if not isinstance(saved, dict):
        raise RunStateError(f"{saved_path} holds no JSON object of arguments; restore it from a copy, or start a new "
                            "run with another --out")
    saved = {_RENAMED_FLAGS.get(k, k): v for k, v in saved.items()}
    if parse is not None:
        check_saved_arguments(saved_path, {k: v for k, v in saved.items() if k not in ("out", "resume")}, parse)
    changed = {k: mine[k] for k in args.given if k not in ("out", "resume") and saved.get(k) != mine[k]}
    refused = [k for k in changed if k not in safe_on_resume]
    if refused:
        was = ", ".join(f"{flag(k)} {saved.get(k)}" for k in refused)
        raise ValueError(f"--resume cannot change {', '.join(map(flag, refused))} (the run in {run_dir} was trained "
                         f"with {was}); drop them, or start a new run with another --out")
    print(f"resuming {run_dir} with its saved arguments", file=sys.stderr)
    for k, value in changed.items():
        print(f"resume: {flag(k)} {value} (was {saved.get(k)})", file=sys.stderr)
    # A flag added since the run was saved takes its default (`mine`'s value, given flags being `changed`): what the
    # run trained with before the flag existed.
    return argparse.Namespace(**{**mine, **saved, **changed, "resume": True, "out": str(run_dir)})


def resume_command(run_dir) -> str:
    """The command that continues the run in run_dir, quoted for a POSIX shell: a folder such as 'my runs/run (1)'
    pastes as the one argument it is."""
    return shlex.join(["python", "train.py", "--out", str(run_dir), "--resume"])


def save_run_arguments(run_dir: Path, arguments: dict) -> None:
    """Write run_dir/args.json whole: `arguments` (flag name -> value, every argument as the run now uses them)."""
    write_text_whole(Path(run_dir) / "args.json", json.dumps(arguments, indent=2) + "\n")


def backup_dir(run_dir: Path, worker: int) -> Path:
    """Where worker `worker` keeps its backup: the chief's in the run directory, the others' in a folder beside
    it (no shared file system needed; removed when the run ends)."""
    return run_dir / "backup" if worker == 0 else run_dir.with_name(f"{run_dir.name}.worker{worker}-backup")


# ---------------------------------------------------------------------------
# The backup
# ---------------------------------------------------------------------------

KEPT_BACKUPS = 2  # a worker's backup may be one epoch ahead of another's when one dies between the two saves


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a run stands: epochs completed and steps trained since it began (the data position its input resumes
    from); Position() is a new run's."""

    epochs_done: int = 0
    steps_done: int = 0


class Backup:
    """The model, optimizer, completed epochs and trained steps in `directory`, by tf.train.CheckpointManager
    (the last KEPT_BACKUPS kept, each written whole). available() lists them, track() names the model and
    optimizer; save() and restore() follow."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.manager = None

    def available(self) -> dict[int, tuple[int, str]]:
        """{completed epochs: (trained steps, checkpoint path)} of the saved backups, {} when there is none."""
        state = tf.train.get_checkpoint_state(str(self.directory))
        found = {}
        for path in state.all_model_checkpoint_paths if state else []:
            path = str(self.directory / Path(path).name)
            try:
                reader = tf.train.load_checkpoint(path)
                epoch, step = (int(reader.get_tensor(f"{k}/.ATTRIBUTES/VARIABLE_VALUE")) for k in ("epoch", "step"))
            except (tf.errors.OpError, ValueError) as err:
                raise RunStateError(f"the backup {path} is damaged ({str(err).splitlines()[0]}); delete "
                                    f"{self.directory} to resume from the start") from None
            found[epoch] = (step, path)
        return found

    def track(self, net, optimizer) -> None:
        """Back up `net` and `optimizer` from now on (call again with a phase's new optimizer)."""
        checkpoint = tf.train.Checkpoint(model=net, optimizer=optimizer, epoch=self.epoch, step=self.step)
        self.manager = tf.train.CheckpointManager(checkpoint, str(self.directory), max_to_keep=KEPT_BACKUPS)

    def restore(self, epoch: int, net, optimizer=None) -> None:
        """Load the backup after `epoch` epochs into `net` (and `optimizer`, whose variables must exist)."""
        objects = {"model": net, "epoch": self.epoch, "step": self.step}
        if optimizer is not None:
            objects["optimizer"] = optimizer
        tf.train.Checkpoint(**objects).restore(self.available()[epoch][1]).expect_partial()

    def save(self, epoch: int, step: int) -> None:
        """Back up after `epoch` completed epochs and `step` trained steps."""
        self.epoch.assign(epoch)
        self.step.assign(step)
        self.manager.save(checkpoint_number=epoch)


def saved_epochs(run_dir: Path) -> str:
    """What a stopped run keeps, for its last message: "epochs 1-N are saved" or "no epoch is saved yet"."""
    try:
        done = max(Backup(run_dir / "backup").available(), default=0)
    except (RunStateError, OSError):
        done = 0
    return f"epochs 1-{done} are saved" if done else "no epoch is saved yet"


# ---------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------

class RunLock:
    """An exclusive fcntl.flock on `directory`/train.lock holding this process's PID, released when the process
    ends (even by SIGKILL); a second process raises RunStateError naming the holder's PID at once."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunStateError(f"{self.path.parent} is in use by process {holder} (it holds {self.path}); wait "
                                "for it to end or stop it, then --resume") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the flock
        return False
