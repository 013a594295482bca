"""What the collective costs: train.py's step time with two workers on this machine (MultiWorkerMirroredStrategy on
127.0.0.1, each worker one replica of half the global batch) over its step time in one process, same global batch.

Both run as real train.py processes; a run's speed is the steps/s train.py prints for its last epoch (the first
one also traces and compiles the step). Two workers on one machine share its cores, so the ratio is the price of
the collective's all-reduces plus the sharing; on separate machines only the first part remains.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import ROOT, Sizes, ratio_summary, summary

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): \d+ steps in \S+ \(([\d.]+) steps/s\)", re.MULTILINE)
EPOCHS, STEPS = 2, 10  # the second epoch is timed
TIMEOUT_S = 900


def free_ports(n: int) -> list[int]:
    """n ports free on 127.0.0.1 right now (bound, read, released)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def last_epoch_steps_per_s(stdout: str) -> float:
    """The steps/s of the last epoch line train.py printed (standard output not a terminal)."""
    return float(EPOCH_LINE.findall(stdout)[-1][2])


def train_flags(dataset_dir: str, sizes: Sizes, out: Path) -> list[str]:
    return ["train.py", "--data", dataset_dir, "--model", "unet", "--input-size", *map(str, sizes.input_hw),
            "--bs", str(sizes.batch_size), "--epochs", str(EPOCHS), "--steps-per-epoch", str(STEPS),
            "--tb-images", "0", "--val-split", "none", "--out", str(out)]


def one_process(dataset_dir: str, sizes: Sizes, work: Path) -> float:
    """Steps/s of train.py in one process (the default strategy)."""
    run = subprocess.run([sys.executable, *train_flags(dataset_dir, sizes, work / "one")], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    return last_epoch_steps_per_s(run.stdout)


def two_workers(dataset_dir: str, sizes: Sizes, work: Path) -> float:
    """Steps/s of the chief of two train.py workers on 127.0.0.1."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, *train_flags(dataset_dir, sizes, work / f"worker{index}"), "--strategy", "multiworker"],
            cwd=ROOT, env={**os.environ, "TF_CONFIG": json.dumps(config)}, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True))
    outputs = [proc.communicate(timeout=TIMEOUT_S)[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"a train.py worker failed (exit codes {[proc.returncode for proc in procs]})")
    return last_epoch_steps_per_s(outputs[0])


def measure_multiworker(dataset_dir: str, sizes: Sizes) -> dict:
    """Per-step time of two localhost workers over one process (> 1: the collective's cost), taking turns
    sizes.repeats times, and both speeds."""
    runs = {"one process": [], "two workers": []}
    for _ in range(sizes.repeats):
        with tempfile.TemporaryDirectory() as work:
            runs["one process"].append(one_process(dataset_dir, sizes, Path(work)))
            runs["two workers"].append(two_workers(dataset_dir, sizes, Path(work)))
    return {
        "steps_per_s": {name: summary(values, "steps/s") for name, values in runs.items()},
        # step time of two workers / step time of one process = steps/s of one / steps/s of two
        "overhead": ratio_summary(runs["one process"], runs["two workers"]),
        "global_batch": sizes.batch_size, "input_hw": list(sizes.input_hw),
    }
