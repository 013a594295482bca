"""layouts.py, readers.py and data.py: each NYU layout read back in metres, the pipeline's shapes, masks, augmentation, errors."""
import json
import logging
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf

import data
import layouts
import nyu
import nyu_layouts as L
import synth
from depth import DepthScale, unpack_target
from nyu import DEPTH_CODECS
from conftest import ROOT

PNG8_STEP_M = 1 / DEPTH_CODECS["png8_10m"].units_per_metre  # DenseDepth's 8-bit training depth quantum
MM = 1 / DEPTH_CODECS["png16_mm"].units_per_metre


def read_back(split):
    """[(rgb uint8 [H, W, 3], depth m [H, W])] of every frame, in order."""
    return [(f["rgb"].numpy(), f["depth"].numpy()[..., 0]) for f in data.frames(split)]


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


def test_a_command_line_error_is_the_only_line_on_stderr(tmp_path):
    """No TensorFlow start-up logging around it (quiet.py), with TF_CPP_MIN_LOG_LEVEL left to the script."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run([sys.executable, "data.py", "inspect", str(tmp_path / "missing")], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr == (f"error: {tmp_path / 'missing'} does not exist; pass a dataset path "
                          "(write the synthetic one with: python -m synth)\n")


def corrupt_dataset(tmp_path):
    """Three test frames, the middle one's depth PNG cut in half."""
    test = L.make_frames(3, seed=9)
    files = L.densedepth_files([], test)
    files["data/nyu2_test/00001_depth.png"] = files["data/nyu2_test/00001_depth.png"][:100]
    return L.write_zip(tmp_path / "nyu_data.zip", files), test


def test_corrupt_frame_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    path, test = corrupt_dataset(tmp_path)
    split = layouts.open_source(path).split("test")
    with caplog.at_level(logging.WARNING, logger="depth.data"):
        got = read_back(split)
    assert len(got) == 2
    np.testing.assert_allclose(got[1][1], test[2][1], atol=MM)  # frame 2 came next, nothing shifted or mixed
    assert "00001_depth.png" in caplog.text and "truncated PNG" in caplog.text
    assert len(split.take_skipped()) == 1 and split.take_skipped() == []


def test_corrupt_frame_is_an_error_naming_it_when_strict(tmp_path):
    path, _ = corrupt_dataset(tmp_path)
    split = layouts.open_source(path).split("test")
    with pytest.raises(tf.errors.OpError, match="00001_depth.png: depth: truncated PNG"):
        list(data.frames(split, strict=True))


def test_wrong_depth_bit_depth_is_not_read_silently(tmp_path):
    """A 16-bit depth where DenseDepth's training split has 8-bit would scale depths 257x: refuse it."""
    train = L.make_frames(1)
    files = L.densedepth_files(train, [])
    files["data/nyu2_train/room_0_out/0.png"] = L.depth_png16(train[0][1])
    split = layouts.open_source(L.write_zip(tmp_path / "nyu_data.zip", files)).split("train")
    assert read_back(split) == [] and "8-bit PNG, 255 = 10 m" in split.skipped[0]


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
    assert tuple(data.decode_rgb(blob, None, "image", min_hw).shape) == (*expected_hw, 3)
    assert tuple(data.decode_rgb(blob, None, "image").shape) == (48, 64, 3)


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
    (tests/test_synth.py checks the frames themselves)."""
    out = synth.write_synthetic(tmp_path / "synth", train=3, test=2, workers=1)
    run = subprocess.run([sys.executable, "data.py", "inspect", str(out / "nyu_data.zip")], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
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
