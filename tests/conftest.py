"""Shared test set-up: keep runs on the CPU, and import the project from the repository root."""
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# pytest-xdist runs a worker process per core (the Makefile's TEST_WORKERS): each TensorFlow process, and each
# script a test starts (they inherit the variable), gets its share of the cores for an op's threads. TensorFlow's
# default, every core in every process, oversubscribes them, and its pools spin while they wait: about 11 % of the
# suite's time on 2 cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL_RGBD = ROOT.parent / "shared" / "real_rgbd"  # real sensor frames (its README); absent outside this machine


def real_rgbd(*parts) -> Path:
    """A path under ../shared/real_rgbd, skipping the calling test (with the reason) when it is absent."""
    import pytest

    path = REAL_RGBD.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the real RGB-D frames live in ../shared/real_rgbd)")
    return path


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder `name`, filled by build(folder) once per test session: pytest-xdist's workers share it (a file
    lock; the first to come builds, the others wait and reuse), so an expensive reference run is paid once."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, holding each worker's own basetemp
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            build(folder)
            done.touch()
    return folder


# The modules that take 20 s or more, by their longest test, longest first (`pytest --durations=0`, 2026-12-02: from
# test_distributed.py's 53 s to test_data.py's 7 s); every other module takes under 13 s in all.
HEAVY = ("test_distributed.py", "test_kerashub.py", "test_train.py", "test_finetune.py", "test_benchmark.py",
         "test_resume.py", "test_export_safety.py", "test_notebook.py", "test_model.py", "test_sparse_to_dense.py",
         "test_evaluate.py", "test_export.py", "test_predict.py", "test_data.py")


def pytest_collection_modifyitems(items):
    """The order for pytest-xdist's work stealing on two workers (the Makefile's): each is first handed one half of
    the list, in order, and later steals only from the end of the other's. So each half starts with heavy modules,
    dealt alternately, and ends with light ones: the long tests start early on both, and no worker ends the session
    alone on one (a 30 s test last in one half left the other worker idle that long). The same order on every
    worker (pytest-xdist checks)."""
    heavy = [[item for item in items if item.path.name == name] for name in HEAVY]
    light = [item for item in items if item.path.name not in HEAVY]
    halves = [sum(heavy[0::2], []), sum(heavy[1::2], [])]
    in_first = min(len(light), max(0, len(items) // 2 - len(halves[0])))  # the first half's share of the light
    items[:] = halves[0] + light[:in_first] + halves[1] + light[in_first:]


def randomize(model, seed=0):
    """Give biases and BatchNorm parameters and statistics random values near their defaults (kernels are
    random already), so equality checks cover them and the outputs stay finite."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.name in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif v.name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0.0, 0.1, v.shape).astype("float32"))
