"""The synthetic dataset on disk, in the two zips DenseDepth ships NYU Depth V2 as (Alhashim & Wonka 2018).

nyu_data.zip: data/nyu2_train/<scene>/<i>.jpg + <i>.png (8-bit depth, 255 = 10 m) and
data/nyu2_test/<i>_colors.png + <i>_depth.png (16-bit millimetres), listed in data/nyu2_{train,test}.csv.
nyu_test.zip: eigen_test_rgb.npy, eigen_test_depth.npy (float32 metres) holding the same test frames, and
eigen_test_crop.npy. layouts.open_source reads the folder holding both.
"""
from __future__ import annotations

import io
import logging
import multiprocessing
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

import nyu
from nyu import DEPTH_CODECS
from synth.render import render_frame

LOG = logging.getLogger("depth.synth")

SYNTH_FRAMES = {"train": 600, "test": 40}  # the default synthetic set: what `make demo` and train.py use
SYNTH_DIR = "data/synth"  # where it goes by default (train.py's default --data; the Makefile's DEMO_DATA)
DEFAULT_WORKERS = 2  # rendering processes: the project's reference machine has 2 cores
_SPLIT_IDS = {"train": 0, "test": 1}  # mixed into each frame's seed, so train and test never share a scene
_TRAIN_FRAMES_PER_SCENE = 50  # DenseDepth's nyu2_train keeps each scene's frames in a folder; so does this set


def write_synthetic(out_dir, *, train: int = SYNTH_FRAMES["train"], test: int = SYNTH_FRAMES["test"], seed: int = 0,
                    workers: int = DEFAULT_WORKERS) -> Path:
    """Render `train` + `test` frames into out_dir/nyu_data.zip (DenseDepth's layout: JPEG + 8-bit depth for
    train, PNG + 16-bit mm depth for test) and out_dir/nyu_test.zip (eigen_test_{rgb,depth,crop}.npy holding
    the same test frames), on `workers` processes. Deterministic for a seed. Returns out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the test frames' arrays are stacked on disk, not in memory, until nyu_test.zip takes them
    test_npy = {"rgb": out_dir / ".eigen_test_rgb.npy", "depth": out_dir / ".eigen_test_depth.npy"}
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        _write_nyu_data(out_dir / "nyu_data.zip.partial", test_npy, train=train, test=test, seed=seed, pool=pool)
    _write_nyu_test(out_dir / "nyu_test.zip.partial", test_npy)
    for path in test_npy.values():
        path.unlink()
    # Renamed only when whole, so an interrupted run never leaves a zip that looks finished.
    for name in ("nyu_data.zip", "nyu_test.zip"):
        (out_dir / f"{name}.partial").replace(out_dir / name)
    return out_dir


def ensure_synthetic(out_dir, *, train: int = SYNTH_FRAMES["train"], test: int = SYNTH_FRAMES["test"],
                     seed: int = 0) -> Path:
    """out_dir, after writing the synthetic dataset there unless both of its zips already exist."""
    out_dir = Path(out_dir)
    if not ((out_dir / "nyu_data.zip").is_file() and (out_dir / "nyu_test.zip").is_file()):
        LOG.warning("writing the synthetic NYU-format dataset to %s (%d train, %d test frames)", out_dir, train, test)
        write_synthetic(out_dir, train=train, test=test, seed=seed)
    return out_dir


def frame_seed(seed: int, split: str, index: int) -> int:
    """The render_frame seed of frame `index` of `split` in the set made with `seed`."""
    return int(np.random.SeedSequence([seed, _SPLIT_IDS[split], index]).generate_state(1)[0])


def _write_nyu_data(path: Path, test_npy: dict, *, train: int, test: int, seed: int, pool) -> None:
    """nyu_data.zip's frames and CSV lists at `path`; the test frames' arrays also go to the test_npy files
    (rgb uint8 [test, 480, 640, 3], depth float32 [test, 480, 640] metres)."""
    rgb_stack = np.lib.format.open_memmap(test_npy["rgb"], "w+", np.uint8, (test, *nyu.FRAME_HW, 3))
    depth_stack = np.lib.format.open_memmap(test_npy["depth"], "w+", np.float32, (test, *nyu.FRAME_HW))
    train_rows, test_rows = [], []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, (rgb_jpeg, depth_png) in enumerate(_rendered(_train_files, seed, "train", train, pool)):
            scene = f"data/nyu2_train/synth_{i // _TRAIN_FRAMES_PER_SCENE:04d}_out"
            train_rows.append((f"{scene}/{i}.jpg", f"{scene}/{i}.png"))
            zf.writestr(train_rows[-1][0], rgb_jpeg)
            zf.writestr(train_rows[-1][1], depth_png)
        for i, (rgb_png, depth_png, rgb, depth) in enumerate(_rendered(_test_files, seed, "test", test, pool)):
            test_rows.append((f"data/nyu2_test/{i:05d}_colors.png", f"data/nyu2_test/{i:05d}_depth.png"))
            zf.writestr(test_rows[-1][0], rgb_png)
            zf.writestr(test_rows[-1][1], depth_png)
            rgb_stack[i], depth_stack[i] = rgb, depth
        for name, rows in (("nyu2_train", train_rows), ("nyu2_test", test_rows)):
            zf.writestr(f"data/{name}.csv", "".join(f"{r},{d}\n" for r, d in rows))
    rgb_stack.flush()
    depth_stack.flush()


def _write_nyu_test(path: Path, test_npy: dict) -> None:
    """nyu_test.zip at `path`: the stacked test arrays and Eigen's crop, as DenseDepth ships them."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.write(test_npy["rgb"], "eigen_test_rgb.npy")
        zf.write(test_npy["depth"], "eigen_test_depth.npy")
        crop = io.BytesIO()
        np.save(crop, np.asarray(nyu.EIGEN_CROP, np.int64))
        zf.writestr("eigen_test_crop.npy", crop.getvalue())


def _rendered(render, seed: int, split: str, count: int, pool):
    """render(job) of frames 0..count-1 of `split`, in order, rendered on the pool with a progress bar."""
    jobs = [(seed, split, i) for i in range(count)]
    frames = pool.imap(render, jobs, chunksize=2)
    return tqdm(frames, total=count, desc=f"{split} frames", unit="frame", file=sys.stderr)


# The pool pickles these by name, so they stay module-level functions of this module.

def _train_files(job: tuple) -> tuple[bytes, bytes]:
    """(seed, split, index) -> (JPEG bytes, 8-bit depth PNG bytes) as in DenseDepth's nyu2_train."""
    rgb, depth = render_frame(frame_seed(*job))
    return _jpeg_bytes(rgb), DEPTH_CODECS["png8_10m"].png_bytes(depth)


def _test_files(job: tuple) -> tuple[bytes, bytes, np.ndarray, np.ndarray]:
    """(seed, split, index) -> (RGB PNG bytes, 16-bit mm depth PNG bytes, rgb uint8 [480, 640, 3],
    depth float32 [480, 640] metres) as in DenseDepth's nyu2_test and eigen_test_*.npy."""
    rgb, depth = render_frame(frame_seed(*job))
    return _png_bytes(rgb), DEPTH_CODECS["png16_mm"].png_bytes(depth), rgb, depth


def _png_bytes(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _jpeg_bytes(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=95)
    return out.getvalue()
