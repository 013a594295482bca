"""layouts.py, readers.py, filecheck.py and data.py: each NYU layout read back in metres, the pipeline's shapes, masks, augmentation, errors."""
import json
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import data
import decode
import filecheck
import layouts
import nyu
import nyu_layouts as L
import synth
from depth import DepthScale, unpack_target
from nyu import DEPTH_CODECS
from splits import SkipLog
from conftest import ROOT, real_rgbd

PNG8_STEP_M = 1 / DEPTH_CODECS["png8_10m"].units_per_metre  # DenseDepth's 8-bit training depth quantum
MM = 1 / DEPTH_CODECS["png16_mm"].units_per_metre


def read_back(split, skipped=None):
    """[(rgb uint8 [H, W, 3], depth m [H, W])] of every frame, in order (frames left out: recorded in skipped)."""
    return [(f["rgb"].numpy(), f["depth"].numpy()[..., 0]) for f in data.frames(split, skipped=skipped)]


def assert_depths(split, frames, tolerance_m):
    got = read_back(split)
    assert len(got) == len(frames)
    for (rgb, depth), (want_rgb, want_depth) in zip(got, frames):
        assert rgb.shape == want_rgb.shape and depth.shape == want_depth.shape
        np.testing.assert_allclose(depth, want_depth, atol=tolerance_m)
        assert np.all((depth == 0) == (want_depth == 0)), "holes must stay holes"


@pytest.mark.parametrize("as_zip", [True, False])
def test_densedepth_zip_and_extracted_folder(tmp_path, as_zip):
    train, test = L.make_frames(3, seed=1), L.make_frames(2, seed=2)
    files = L.densedepth_files(train, test)
    path = L.write_zip(tmp_path / "nyu_data.zip", files) if as_zip else L.write_folder(tmp_path / "nyu", files)
    source = layouts.open_source(path)
    assert source.layout == "densedepth" and set(source.splits) == {"train", "test"}
    assert_depths(source.split("train"), train, PNG8_STEP_M / 2 + 1e-6)
    assert_depths(source.split("test"), test, MM / 2 + 1e-6)
    test_rgb = read_back(source.split("test"))[0][0]
    np.testing.assert_array_equal(test_rgb, test[0][0])  # PNG RGB is lossless


def test_densedepth_folder_given_as_its_data_subfolder(tmp_path):
    train = L.make_frames(2)
    L.write_folder(tmp_path / "nyu", L.densedepth_files(train, []))
    assert_depths(layouts.open_source(tmp_path / "nyu" / "data").split("train"), train, PNG8_STEP_M / 2 + 1e-6)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_eigen_test_npy_zip_exact_metres_and_crop(tmp_path, compression):
    test = L.make_frames(3, seed=3)
    path = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(test), compression)
    split = layouts.open_source(path).split("test")
    assert split.crop == (20, 459, 24, 615)
    assert_depths(split, test, 0.0)
    np.testing.assert_array_equal(read_back(split)[2][0], test[2][0])


def test_labeled_mat_with_and_without_splits(tmp_path):
    frames = L.make_frames(5, seed=4)
    mat = L.write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", frames, train_ndx=[0, 2, 3], test_ndx=[1, 4])
    source = layouts.open_source(mat)
    assert len(source.split("train")) == 3
    assert_depths(source.split("test"), [frames[1], frames[4]], 0.0)
    np.testing.assert_array_equal(read_back(source.split("test"))[0][0], frames[1][0])

    (tmp_path / "splits.mat").unlink()
    source = layouts.open_source(tmp_path)  # the folder holding the .mat works too
    assert list(source.splits) == ["all"]
    with pytest.raises(layouts.DataError, match="no 'train' split"):
        source.split("train")


@pytest.mark.parametrize("with_lists", [True, False])
def test_bts_layout(tmp_path, with_lists):
    train, test = L.make_frames(4, seed=5), L.make_frames(2, seed=6)
    root = L.write_bts(tmp_path / "nyu_depth_v2", train, test, with_lists)
    source = layouts.open_source(root)
    assert source.layout == "bts"
    by_name = lambda frames: sorted(range(len(frames)), key=lambda i: f"scene_{i % 2}/rgb_{i:05d}")
    order = by_name(train) if not with_lists else range(len(train))  # a glob is sorted, a list keeps its order
    assert_depths(source.split("train"), [train[i] for i in order], MM / 2 + 1e-6)
    assert_depths(source.split("test"), [test[i] for i in (by_name(test) if not with_lists else range(2))], MM / 2 + 1e-6)


@pytest.mark.parametrize("depth_kind, tolerance", [("png", MM / 2 + 1e-6), ("npy", 0.0)])
def test_folder_of_pairs(tmp_path, depth_kind, tolerance):
    train, test = L.make_frames(2, seed=7), L.make_frames(1, seed=8)
    L.write_pairs(tmp_path / "caps" / "train", train, depth_kind)
    L.write_pairs(tmp_path / "caps" / "test", test, depth_kind)
    source = layouts.open_source(tmp_path / "caps")
    assert source.layout == "pairs" and set(source.splits) == {"train", "test"}
    assert_depths(source.split("train"), train, tolerance)
    assert_depths(source.split("test"), test, tolerance)


def test_unknown_path_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(layouts.DataError, match="not a dataset this project reads; expected DenseDepth's nyu_data.zip"):
        layouts.open_source(tmp_path)
    with pytest.raises(layouts.DataError, match="does not exist"):
        layouts.open_source(tmp_path / "missing.zip")
    assert data.main(data.parse_args(["inspect", str(tmp_path)])) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"error: {tmp_path} is not a dataset") and "Traceback" not in err


def test_a_csv_line_without_a_depth_column_is_named(tmp_path):
    files = L.densedepth_files(L.make_frames(2, seed=4), [])
    files["data/nyu2_train.csv"] += b"data/nyu2_train/room_0_out/0.jpg\n"  # the third line lost its depth path
    with pytest.raises(layouts.DataError, match=r"nyu2_train.csv line 3 is 'data/nyu2_train/room_0_out/0.jpg'; "
                                                 "each line must be rgb_path,depth_path"):
        layouts.open_source(L.write_zip(tmp_path / "nyu_data.zip", files))


def test_a_truncated_zip_is_called_a_corrupt_download(tmp_path):
    whole = L.write_zip(tmp_path / "whole.zip", L.densedepth_files(L.make_frames(2, seed=4), []))
    (tmp_path / "nyu_data.zip").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(layouts.DataError, match="not a readable zip file .*truncated or corrupt download"):
        layouts.open_source(tmp_path / "nyu_data.zip")


def test_a_command_line_error_is_the_only_line_on_stderr(tmp_path, capsys):
    """In-process; that a process's stderr holds no TensorFlow start-up logging either (quiet.py, with
    TF_CPP_MIN_LOG_LEVEL left to the script) is test_inspect_end_to_end_on_the_synthetic_set's subprocess."""
    assert data.main(data.parse_args(["inspect", str(tmp_path / "missing")])) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'missing'} does not exist; pass a dataset path "
                                       "(write the synthetic one with: python -m synth)\n")


def corrupt_dataset(tmp_path):
    """Three test frames, the middle one's depth PNG cut in half."""
    test = L.make_frames(3, seed=9)
    files = L.densedepth_files([], test)
    files["data/nyu2_test/00001_depth.png"] = files["data/nyu2_test/00001_depth.png"][:100]
    return L.write_zip(tmp_path / "nyu_data.zip", files), test


def test_corrupt_frame_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    path, test = corrupt_dataset(tmp_path)
    split, skipped = layouts.open_source(path).split("test"), SkipLog()
    with caplog.at_level(logging.WARNING, logger="depth.data"):
        got = read_back(split, skipped)
    assert len(got) == 2
    np.testing.assert_allclose(got[1][1], test[2][1], atol=MM)  # frame 2 came next, nothing shifted or mixed
    assert "00001_depth.png" in caplog.text and "truncated PNG" in caplog.text
    assert len(skipped.take()) == 1 and skipped.take() == []


def test_corrupt_frame_is_an_error_naming_it_when_strict(tmp_path):
    path, _ = corrupt_dataset(tmp_path)
    split = layouts.open_source(path).split("test")
    with pytest.raises(tf.errors.OpError, match="00001_depth.png: depth: truncated PNG"):
        list(data.frames(split, strict=True))


def test_a_split_is_a_value_and_its_frames_skipped_in_two_passes_are_reported_once(tmp_path, capsys):
    """Two bad frames of four (one cut short, caught by the reading stage; one corrupt inside, caught by the
    decode audit), read in two passes of one epoch: one report naming 2 frames, the cut one first (the
    audit names its frames at each pass's end); the log is empty once taken. The split itself is a frozen value."""
    import dataclasses

    import callbacks
    from mixtures import Mixture

    files = L.densedepth_files([], L.make_frames(4, seed=9))
    files["data/nyu2_test/00001_depth.png"] = files["data/nyu2_test/00001_depth.png"][:100]
    png = bytearray(files["data/nyu2_test/00002_depth.png"])
    idat = png.index(b"IDAT") + 4
    png[idat:idat + 40] = b"\x00" * 40  # the header and the IEND are intact: TensorFlow's decoder fails
    files["data/nyu2_test/00002_depth.png"] = bytes(png)
    path = L.write_zip(tmp_path / "nyu_data.zip", files)
    mixture = Mixture.of(layouts.open_source(path).split("test"))
    passes = mixture.dataset(batch_size=1, input_hw=(24, 32), target_hw=(12, 16)).repeat(2)
    assert sum(1 for _ in passes) == 4 and mixture.skipped[0].count == 2  # 2 good frames a pass; 2 bad, once each
    callbacks.SkippedFrames([mixture, None]).on_epoch_end(0)
    where = f"{path}: data/nyu2_test/00001_colors.png + data/nyu2_test/00001_depth.png"
    assert capsys.readouterr().err == f"\nwarning: epoch 1: skipped 2 unreadable frame(s) of {path} [test], e.g. {where}: "\
        "depth: truncated PNG (no IEND chunk at the end) (image file is truncated)\n"
    assert mixture.skipped[0].take() == []

    split = mixture.splits[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.name = "train"
    assert split.subset(range(4)) == split and hash(split.subset(range(4))) == hash(split)
    assert split.subset([0, 1]) != split and split.subset([0, 1]).keys == split.keys[:2]


def test_wrong_depth_bit_depth_is_not_read_silently(tmp_path):
    """A 16-bit depth where DenseDepth's training split has 8-bit would scale depths 257x: refuse it."""
    train = L.make_frames(1)
    files = L.densedepth_files(train, [])
    files["data/nyu2_train/room_0_out/0.png"] = L.depth_png16(train[0][1])
    split = layouts.open_source(L.write_zip(tmp_path / "nyu_data.zip", files)).split("train")
    skipped = SkipLog()
    assert read_back(split, skipped) == [] and "8-bit PNG, 255 = 10 m" in skipped.take()[0]


def test_resize_depth_never_blends_holes():
    depth = np.full((8, 8, 1), 2.0, np.float32)
    depth[0:2, 0:2] = 0.0  # one whole output pixel's worth of holes
    depth[4, 4] = 0.0  # a single hole under an otherwise valid output pixel
    resized, mask = data.resize_depth(tf.constant(depth), (4, 4))
    assert mask.numpy()[0, 0, 0] == 0 and mask.numpy().sum() == 15
    np.testing.assert_allclose(resized.numpy()[mask.numpy() > 0], 2.0)


@pytest.mark.parametrize("min_hw, expected_hw", [((24, 32), (24, 32)), ((13, 17), (24, 32)), ((6, 8), (6, 8)),
                                                  ((7, 8), (12, 16)), ((60, 80), (48, 64))])
def test_jpeg_decoded_at_the_smallest_scale_covering_the_input(min_hw, expected_hw):
    """48x64 JPEG: libjpeg's 1/2, 1/4, 1/8 give 24x32, 12x16, 6x8; never below min_hw, full size if none fits."""
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    blob = tf.constant(L.jpeg_bytes(rgb))
    assert tuple(decode.decode_rgb(blob, None, "image", min_hw).shape) == (*expected_hw, 3)
    assert tuple(decode.decode_rgb(blob, None, "image").shape) == (48, 64, 3)


def test_scaled_decode_matches_full_decode_then_resize(tmp_path):
    """The training pipeline's reduced-scale JPEG decode against a full decode and resize_rgb: same picture."""
    train = L.make_frames(2, seed=12)
    split = layouts.open_source(L.write_zip(tmp_path / "nyu_data.zip", L.densedepth_files(train, []))).split("train")
    x, _ = next(iter(data.make_dataset(split, batch_size=2, input_hw=(24, 32), target_hw=(12, 16))))
    full = [data.resize_rgb(frame["rgb"], (24, 32)).numpy() for frame in data.frames(split)]
    assert np.abs(x.numpy() - np.stack(full)).mean() < 2 / 255


def example_batches(split, seed, augmentation):
    dataset = data.make_dataset(split, batch_size=2, input_hw=(24, 32), target_hw=(12, 16), training=True,
                                augmentation=augmentation, seed=seed)
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_pipeline_shapes_targets_and_masks(tmp_path):
    test = L.make_frames(3, seed=10)
    split = layouts.open_source(L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(test))).split("test")
    dataset = data.make_dataset(split, batch_size=2, input_hw=(24, 32), target_hw=(12, 16))
    assert dataset.element_spec[0].shape.as_list() == [None, 24, 32, 3]  # static: models are built on it
    batches = list(dataset)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 24, 32, 3), (1, 24, 32, 3)]
    x, y = batches[0]
    assert y.shape == (2, 12, 16, 2) and 0.0 <= x.numpy().min() and x.numpy().max() <= 1.0
    target, mask = unpack_target(y)
    depth_m = DepthScale().decode(target).numpy()[mask.numpy() > 0]
    assert 1.0 <= depth_m.min() and depth_m.max() <= 6.25 + 1e-4  # make_frames' ramps, in metres


def test_augmentation_is_seeded_and_flips_image_with_depth(tmp_path):
    train = L.make_frames(6, seed=11)
    split = layouts.open_source(L.write_zip(tmp_path / "nyu_data.zip", L.densedepth_files(train, []))).split("train")
    flip_only = data.Augment(flip=0.5, channel_swap=0, brightness=0, contrast=0, gamma=0)
    first, again = example_batches(split, 5, flip_only), example_batches(split, 5, flip_only)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, example_batches(split, 6, flip_only)))
    flips = []
    for x, y in first:
        for rgb, target in zip(x, y):
            image_rises = rgb[:, -1, 0].mean() > rgb[:, 0, 0].mean()  # red follows depth in make_frames
            depth_m = DepthScale().decode(target[..., 0]).numpy()
            assert image_rises == (depth_m[:, -2].mean() > depth_m[:, 1].mean()), "image and depth flipped apart"
            flips.append(image_rises)
    assert set(flips) == {True, False}, "with p=0.5 over 6 frames both orientations should appear for this seed"


def test_inspect_end_to_end_on_the_synthetic_set(tmp_path, capsys):
    """data.py inspect through a real subprocess and in-process, on both zips python -m synth writes
    (tests/test_synth.py checks the frames themselves). The subprocess, with TF_CPP_MIN_LOG_LEVEL left to the script,
    writes nothing to stderr but its progress lines: no TensorFlow start-up logging (quiet.py)."""
    out = synth.write_synthetic(tmp_path / "synth", train=3, test=2, workers=1)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run([sys.executable, "data.py", "inspect", str(out / "nyu_data.zip")], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stderr.splitlines() if not line.startswith(("train: ", "test: "))] == []
    assert data.main(data.parse_args(["inspect", str(out / "nyu_test.zip")])) == 0
    stats = {"nyu_data.zip": json.loads(run.stdout), "nyu_test.zip": json.loads(capsys.readouterr().out)}
    train, test, eigen = stats["nyu_data.zip"]["train"], stats["nyu_data.zip"]["test"], stats["nyu_test.zip"]["test"]
    assert (train["frames"], test["frames"], eigen["frames"]) == (3, 2, 2)
    assert train["rgb_shape"] == test["rgb_shape"] == eigen["rgb_shape"] == "480x640x3"
    for split in (train, test, eigen):
        assert 0.5 - 0.02 <= split["depth_min_m"] < split["depth_mean_m"] < split["depth_max_m"] <= 10.0
        assert 0.0 < split["invalid_fraction"] < 0.2
    assert abs(test["depth_mean_m"] - eigen["depth_mean_m"]) < 0.001  # same frames: mm PNG vs float metres
    assert eigen["crop"] == list(nyu.EIGEN_CROP)


# ---------------------------------------------------------------------------
# Depth units (--depth-units-per-metre)
# ---------------------------------------------------------------------------

def named_frame(split, file_name):
    """(rgb, depth m) of the frame of `split` whose RGB file is `file_name`."""
    index = next(i for i, key in enumerate(split.keys) if key[0].endswith(file_name))
    return read_back(split.subset([index]))[0]


@pytest.mark.parametrize("rgb_name, depth_name, units, converted", [
    ("tum_rgb.png", "tum_depth_5000_per_m.png", 5000, "tum_rgb.png"),
    ("kinect2_esanet_rgb.png", "kinect2_esanet_depth_0.1mm.png", 10000, "esanet_rgb.png"),
])
def test_real_tum_and_kinect_v2_depth_read_in_their_native_units(tmp_path, rgb_name, depth_name, units, converted):
    """The TUM (5000 per metre) and Kinect v2 (0.1 mm, 65535 = saturated) frames, read with the flag's unit,
    give the metres of their millimetre copies in pairs/test (converted by the README's recipe: / 5, / 10 with
    65535 -> 0); read as millimetres, inspect says so and names the unit."""
    native, pairs = real_rgbd("native"), real_rgbd("pairs")
    folder = tmp_path / "capture"
    folder.mkdir()
    (folder / "x_rgb.png").write_bytes((native / rgb_name).read_bytes())
    (folder / "x_depth.png").write_bytes((native / depth_name).read_bytes())
    split = layouts.open_source(folder, depth_units_per_metre=units).split("all")
    _, depth = read_back(split)[0]
    _, want = named_frame(layouts.open_source(pairs).split("test"), converted)
    assert depth.shape == want.shape and np.array_equal(depth == 0, want == 0)
    np.testing.assert_allclose(depth, want, atol=0.5 * MM + 1e-6)  # the copies are rounded to whole mm
    as_mm = data.split_stats(layouts.open_source(folder).split("all"))
    assert as_mm["in_range_fraction"] < 0.5 and as_mm["suggested_depth_units_per_metre"] == units
    assert data.split_stats(split)["in_range_fraction"] > 0.99  # Kinect v2 measures a few pixels nearer than 0.1 m


def test_depth_units_flag_on_written_files_and_inspect_advice(tmp_path, capsys, caplog):
    """16-bit PNGs at 5000 per metre, mixed with .npy metres in one folder: the flag reads the PNGs in metres,
    the .npy as they are; inspect without it warns that most depth is out of range and names the unit."""
    frames = L.make_frames(3, seed=13)
    L.write_pairs(tmp_path / "tum", frames, "mixed", units_per_metre=5000)
    split = layouts.open_source(tmp_path / "tum", depth_units_per_metre=5000).split("all")
    assert_depths(split, frames, 0.5 / 5000 + 1e-6)
    assert [key[1] for key in split.keys] == ["cap000_depth.png", "cap001_depth.npy", "cap002_depth.png"]

    with caplog.at_level(logging.WARNING, logger="depth.data"):
        assert data.main(data.parse_args(["inspect", str(tmp_path / "tum")])) == 0
    stats = json.loads(capsys.readouterr().out)["all"]
    assert stats["depth_units_per_metre"] == 1000 and stats["suggested_depth_units_per_metre"] == 5000
    assert "try --depth-units-per-metre 5000" in caplog.text and "TUM RGB-D" in caplog.text
    assert data.main(data.parse_args(["inspect", str(tmp_path / "tum"), "--depth-units-per-metre", "5000"])) == 0
    stats = json.loads(capsys.readouterr().out)["all"]
    assert stats["in_range_fraction"] == 1.0 and stats["suggested_depth_units_per_metre"] is None
    # make_frames' depth: 1-6 m ramps plus 0.25 m per frame, so the mean of the valid pixels is known.
    want_mean = np.mean(np.concatenate([d[d > 0] for _, d in frames]))
    assert stats["depth_mean_m"] == pytest.approx(want_mean, abs=1e-3)


def test_one_depth_unit_flag_in_every_script_recorded_in_args_json(tmp_path):
    import evaluate
    import rundir
    import train

    common = ["--depth-units-per-metre", "5000"]
    assert data.parse_args(["inspect", "x", *common]).depth_units_per_metre == 5000
    assert evaluate.parse_args(["--model", "m.keras", "--data", "x", *common]).depth_units_per_metre == 5000
    args = train.parse_args(["--out", str(tmp_path / "run"), *common])
    (tmp_path / "run").mkdir()
    rundir.save_run_arguments(tmp_path / "run", vars(rundir.run_arguments(args, train.SAFE_ON_RESUME)))
    assert json.loads((tmp_path / "run" / "args.json").read_text())["depth_units_per_metre"] == 5000
    with pytest.raises(SystemExit):
        data.parse_args(["inspect", "x", "--depth-units-per-metre", "0"])
    eigen = L.write_zip(tmp_path / "nyu_test.zip", L.eigen_files(L.make_frames(1)))
    with pytest.raises(layouts.DataError, match="raw float32 in metres, not 16-bit integers; drop --depth-units"):
        layouts.open_source(eigen, depth_units_per_metre=5000)


# ---------------------------------------------------------------------------
# EXIF orientation, mismatched sizes, files judged by their decoders
# ---------------------------------------------------------------------------

def test_exif_portrait_is_upright_everywhere_and_a_size_mismatch_is_a_named_skip(tmp_path, capsys):
    """The training pipeline, inspect and predict.py read the portrait JPEG upright (evaluate.py: test_evaluate);
    the 640x480 RGB with a 200x200 depth is skipped by name, and is an error naming it with strict."""
    import photos

    folder, (upright, depth) = L.odd_pairs(tmp_path / "odd")
    split, skip_log = layouts.open_source(folder).split("all"), SkipLog()
    [(rgb, got_depth)] = read_back(split, skip_log)
    assert rgb.shape == upright.shape and np.abs(rgb.astype(int) - upright).mean() < 4
    np.testing.assert_allclose(got_depth, depth, atol=MM)
    [skipped] = skip_log.take()
    assert "wrong_rgb.png" in skipped and "RGB is 640x480 but depth is 200x200" in skipped

    x, y = next(iter(data.make_dataset(split, batch_size=2, input_hw=(32, 24), target_hw=(16, 12))))
    assert x.shape == (1, 32, 24, 3) and x[0, :16, :, 0].numpy().mean() > 0.8 > 0.2 > x[0, 16:, :, 0].numpy().mean()
    depth_m = DepthScale().decode(unpack_target(y)[0]).numpy()[0, :, :, 0]
    assert depth_m[0].mean() < depth_m[-1].mean()  # near at the top, as written: image and depth agree

    assert data.main(data.parse_args(["inspect", str(folder)])) == 0
    stats = json.loads(capsys.readouterr().out)["all"]
    assert (stats["frames"], stats["frames_read"], stats["skipped"], stats["rgb_shape"]) == (2, 1, 1, "64x48x3")
    np.testing.assert_array_equal(photos.read_rgb(folder / "portrait_rgb.jpg"), rgb)  # one orientation, one decoder

    with pytest.raises(tf.errors.OpError, match="wrong_rgb.png.*RGB is 640x480 but depth is 200x200"):
        list(data.frames(split, strict=True))
    with pytest.raises(layouts.FrameError, match=r"RGB is 48x64 upright \(EXIF orientation 6\) but depth is 64x48"):
        filecheck.check_frame("image", nyu.DEPTH_CODECS["png16_mm"], L.portrait_jpeg_bytes(upright),
                                    L.depth_png16(depth.T), (0, 0))


def test_jpeg_with_trailing_bytes_is_read_and_a_file_corrupt_inside_is_a_named_skip(tmp_path, caplog):
    """A motion photo (a JPEG followed by a video) is read as the JPEG its decoder sees; a PNG whose header is
    whole but whose pixel data is garbage passes the header checks, fails in TensorFlow's decoder and is
    skipped by name, counted once."""
    frames = L.make_frames(3, seed=14)
    files = {}
    for i, (rgb, depth) in enumerate(frames):
        files[f"f{i}_rgb.jpg"], files[f"f{i}_depth.png"] = L.jpeg_bytes(rgb), L.depth_png16(depth)
    files["f0_rgb.jpg"] += b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # an MP4 after the end marker
    png = bytearray(files["f1_depth.png"])
    idat = png.index(b"IDAT") + 4
    png[idat:idat + 40] = b"\x00" * 40  # inside the compressed pixels: the header and the IEND are intact
    files["f1_depth.png"] = bytes(png)
    split, skip_log = layouts.open_source(L.write_folder(tmp_path / "odd", files)).split("all"), SkipLog()
    with caplog.at_level(logging.WARNING, logger="depth.data"):
        got = read_back(split, skip_log)
    assert len(got) == 2
    np.testing.assert_allclose(got[0][1], frames[0][1], atol=MM)
    assert np.abs(got[0][0].astype(int) - frames[0][0]).mean() < 4  # the JPEG, not the video after it
    np.testing.assert_allclose(got[1][1], frames[2][1], atol=MM)
    [skipped] = skip_log.take()
    assert "f1_depth.png" in skipped and "depth: corrupt inside the file" in skipped and "f1_depth.png" in caplog.text
    read_back(split, skip_log)  # a second pass counts the same frame once more, not twice
    assert len(skip_log.take()) == 1
    with pytest.raises(tf.errors.OpError, match="f1_depth.png: depth: corrupt inside the file"):
        list(data.frames(split, strict=True))


def test_real_frames_bts_layout_and_mixed_size_pairs_read_the_depth_their_pngs_hold(tmp_path, capsys):
    """../shared/real_rgbd: the NYU frames in BTS's layout read with each frame's mean valid depth as computed
    here straight from its PNG (16-bit mm); the pairs folder of nine frames at five sizes inspected whole."""
    bts, pairs = real_rgbd("nyu_bts"), real_rgbd("pairs")
    split, skipped = layouts.open_source(bts).split("train"), SkipLog()
    got = read_back(split, skipped)
    assert len(got) == len(split) == 4 and skipped.take() == []
    for (rgb, depth), (rgb_name, depth_name) in zip(got, split.keys):
        stored = np.asarray(Image.open(bts / "sync" / depth_name), np.float64) / 1000
        assert rgb.shape[:2] == depth.shape == stored.shape
        assert depth[depth > 0].mean() == pytest.approx(stored[stored > 0].mean(), rel=1e-6)

    assert data.main(data.parse_args(["inspect", str(pairs)])) == 0
    stats = json.loads(capsys.readouterr().out)["test"]
    assert (stats["frames"], stats["frames_read"], stats["skipped"]) == (9, 9, 0)
    assert stats["rgb_shapes"] == {"480x640x3": 5, "224x224x3": 1, "120x160x3": 1, "424x512x3": 1, "1080x1440x3": 1}
    stored = [np.asarray(Image.open(p), np.float64) / 1000 for p in (pairs / "test").glob("*_depth.png")]
    assert stats["depth_mean_m"] == pytest.approx(np.concatenate([d[d > 0] for d in stored]).mean(), abs=1e-4)


def broken_index(tmp_path, kind):
    """A dataset whose list or index file is in pieces: splits.mat, eigen_test_rgb.npy, or a CSV not in UTF-8."""
    if kind == "splits.mat":
        L.write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", L.make_frames(2), [0], [1])
        (tmp_path / "splits.mat").write_bytes(b"garbage" * 30)
        return tmp_path, "labeled-mat", "Unknown mat file type"
    if kind == "npy":
        files = L.eigen_files(L.make_frames(2))
        files["eigen_test_rgb.npy"] = b"not a npy" * 20
        return L.write_zip(tmp_path / "nyu_test.zip", files), "eigen-npy", "the magic string is not correct"
    files = L.densedepth_files(L.make_frames(2), [])
    files["data/nyu2_train.csv"] = b"\xff\xfe\x00 not utf-8"
    return L.write_zip(tmp_path / "nyu_data.zip", files), "densedepth", "UnicodeDecodeError"


@pytest.mark.parametrize("kind", ["splits.mat", "npy", "csv"])
def test_a_dataset_with_an_index_file_in_pieces_is_one_sentence(tmp_path, kind, capsys):
    path, layout, why = broken_index(tmp_path, kind)
    assert data.main(data.parse_args(["inspect", str(path)])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} looks like {layout} but part of it cannot be read (") and why in err
    assert err.endswith("is every file whole? download or write it again\n") and "Traceback" not in err


def test_inspect_limit_counts_only_the_frames_asked_for(tmp_path, capsys):
    """Frames read ahead of --limit (8 per read) are neither counted as read nor as skipped."""
    test = L.make_frames(6, seed=15)
    files = L.densedepth_files([], test)
    for i in (3, 4, 5):
        del files[f"data/nyu2_test/{i:05d}_depth.png"]  # missing, past the limit
    path = L.write_zip(tmp_path / "nyu_data.zip", files)
    assert data.main(data.parse_args(["inspect", str(path), "--limit", "2"])) == 0
    stats = json.loads(capsys.readouterr().out)["test"]
    assert (stats["frames"], stats["frames_read"], stats["skipped"]) == (6, 2, 0)
    assert data.main(data.parse_args(["inspect", str(path)])) == 0
    stats = json.loads(capsys.readouterr().out)["test"]
    assert (stats["frames"], stats["frames_read"], stats["skipped"]) == (6, 3, 3)


def test_a_heic_frame_in_a_dataset_is_named_with_how_to_convert_it():
    """An RGB frame stored as HEIC (an iPhone capture) was 'not a readable image (cannot identify image file)'."""
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    depth = L.make_frames(1, seed=3)[0][1]
    with pytest.raises(layouts.FrameError) as info:
        filecheck.check_frame("image", nyu.DEPTH_CODECS["png16_mm"], heic, L.depth_png16(depth), (0, 0))
    assert str(info.value) == ("RGB: a HEIC / HEIF photo, which this pipeline cannot decode; convert it to JPEG or PNG "
                               "(heif-convert photo.heic photo.jpg, from libheif)")
