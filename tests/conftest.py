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


# The modules holding the longest tests (multi-process runs, the scale benchmark's processes, KerasHub's trained,
# exported and evaluated runs), started first so that no worker ends the session alone on one of them: pytest-xdist's
# workers steal only whole tests, and only from the end of each other's queue.
FIRST = ("test_distributed.py", "test_benchmark.py", "test_kerashub.py")


def pytest_collection_modifyitems(items):
    """Run FIRST's modules before the rest, in FIRST's order (a stable sort: the same order on every pytest-xdist
    worker)."""
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))


def randomize(model, seed=0):
    """Give biases and BatchNorm parameters and statistics random values near their defaults (kernels are
    random already), so equality checks cover them and the outputs stay finite."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.name in ("gamma", "moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype("float32"))
        elif v.name in ("beta", "moving_mean", "bias"):
            v.assign(rng.normal(0.0, 0.1, v.shape).astype("float32"))
