"""NYU Depth V2 as sparse-to-dense ships it (nyudepthv2/<split>/<scene>/<n>.h5) and as TensorFlow Datasets
prepares that same download (tfds:nyu_depth_v2): read back through inspect, training and evaluation, with the
depths equal in metres.

The TFDS copy is prepared by TFDS's own nyu_depth_v2 builder from files written here in the sparse-to-dense layout
(its download step pointed at them), so the test reads the TFRecords TFDS itself writes; those tests skip when the
optional tensorflow-datasets package is not installed."""
import json
import sys
from unittest import mock

import h5py
import numpy as np
import pytest
import tensorflow as tf

import data
import evaluate
import layouts
import nyu_layouts as L
import train as train_py
from splits import SkipLog

TRAIN, TEST = L.make_frames(4, seed=1), L.make_frames(2, seed=2)  # 48x64, depth ramps in metres with 0 holes
TINY = ["--model", "unet", "--base-filters", "4", "--input-size", "32", "48", "--bs", "2", "--tb-images", "1",
        "--epochs", "1", "--steps-per-epoch", "2"]


def valid_mean_m(frames) -> float:
    return float(np.mean(np.concatenate([depth[depth > 0] for _, depth in frames])))


def written_frame(split, index, written):
    """The (rgb, depth) written for frame `index` of a sparse-to-dense split: files are numbered from 00001."""
    return written[int(split.keys[index][0].rsplit("/", 1)[-1][:5]) - 1]


@pytest.fixture(scope="module")
def nyudepthv2(tmp_path_factory):
    return L.write_sparse_to_dense(tmp_path_factory.mktemp("s2d"), TRAIN, TEST)


def test_sparse_to_dense_frames_are_the_written_ones_in_metres(nyudepthv2):
    source = layouts.open_source(nyudepthv2)
    assert source.layout == "sparse-to-dense"
    assert {name: len(split) for name, split in source.splits.items()} == {"train": 4, "test": 2}
    assert source.split("train").keys[:2] == (("scene_0000/00001.h5",), ("scene_0000/00003.h5",))
    assert source.split("test").source == str(nyudepthv2 / "val")
    for name, written in (("train", TRAIN), ("test", TEST)):
        split = source.split(name)
        seen = []
        for frame in data.frames(split):
            index = int(frame["index"])
            rgb, depth = written_frame(split, index, written)
            np.testing.assert_array_equal(frame["rgb"].numpy(), rgb)  # channels first on disk, H x W x 3 here
            np.testing.assert_array_equal(frame["depth"].numpy()[..., 0], depth)  # float32 metres, holes still 0
            seen.append(index)
        assert sorted(seen) == list(range(len(written)))
    # --data may also be the train/ or val/ folder itself.
    assert list(layouts.open_source(nyudepthv2 / "train").splits) == ["train"]
    assert list(layouts.open_source(nyudepthv2 / "val").splits) == ["test"]


def test_unreadable_h5_files_are_skipped_naming_them_or_stop_a_strict_read(tmp_path, caplog):
    root = L.write_sparse_to_dense(tmp_path, TRAIN[:2], [])
    (root / "train" / "scene_0001" / "00009.h5").write_bytes(b"not an HDF5 file")
    with h5py.File(root / "train" / "scene_0001" / "00010.h5", "w") as f:
        f.create_dataset("rgb", data=np.zeros((3, 48, 64), np.uint8))  # and no depth
    split = layouts.open_source(root).split("train")
    assert len(split) == 4
    skip_log = SkipLog()
    depths = [frame["depth"].numpy()[..., 0] for frame in data.frames(split, skipped=skip_log)]
    assert len(depths) == 2 and all(d.shape == (48, 64) for d in depths)
    skipped = skip_log.take()
    assert len(skipped) == 2
    assert any("scene_0001/00009.h5: OSError" in s for s in skipped)
    assert any("scene_0001/00010.h5: KeyError" in s and "depth" in s for s in skipped)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "00009.h5" in warned and "00010.h5" in warned
    with pytest.raises(tf.errors.OpError, match="00009.h5: OSError.*drop --strict"):
        list(data.frames(split, strict=True))


def test_inspect_train_and_evaluate_on_sparse_to_dense(nyudepthv2, tmp_path, capsys):
    """The three command lines in-process (data.py and train.py keep their subprocess tests in test_data.py and
    test_train.py), reading the same folder."""
    assert data.main(data.parse_args(["inspect", str(nyudepthv2)])) == 0
    stats = json.loads(capsys.readouterr().out)
    for name, written in (("train", TRAIN), ("test", TEST)):
        valid = np.concatenate([depth[depth > 0] for _, depth in written])
        assert stats[name]["layout"] == "sparse-to-dense" and stats[name]["frames"] == len(written)
        assert stats[name]["rgb_shape"] == "48x64x3" and stats[name]["skipped"] == 0
        assert stats[name]["depth_min_m"] == pytest.approx(valid.min(), abs=1e-4)
        assert stats[name]["depth_max_m"] == pytest.approx(valid.max(), abs=1e-4)
        assert stats[name]["depth_mean_m"] == pytest.approx(valid.mean(), abs=1e-4)

    out = tmp_path / "run"
    assert train_py.run([*TINY, "--data", str(nyudepthv2), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"on 4 frames of {nyudepthv2 / 'train'} [train]" in err and "validating on 2 frames [test]" in err
    assert (out / "model.keras").is_file()

    report = tmp_path / "eval"
    args = evaluate.parse_args(["--model", str(out / "model.keras"), "--data", str(nyudepthv2), "--out", str(report)])
    assert evaluate.main(args) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == 2 and metrics["skipped"] == []
    # Both constants in metres: the fair one is the training mean train.py recorded (its 8 batches of 2 hold each of
    # the 4 training frames 4 times, resized to 32x48), the other the 2 test frames' own mean over valid pixels.
    fair, hindsight = metrics["constants"]
    assert fair["kind"] == "training_mean" and fair["depth_m"] == pytest.approx(valid_mean_m(TRAIN), rel=1e-3)
    assert hindsight["kind"] == "frames_mean" and hindsight["depth_m"] == pytest.approx(valid_mean_m(TEST), rel=1e-6)
    assert f"| {out / 'model.keras'} | {nyudepthv2} [test], 2 images |" in (report / "table.md").read_text()


# ---------------------------------------------------------------------------
# TensorFlow Datasets' prepared copy
# ---------------------------------------------------------------------------

# 34 test frames: TFDS shards them in two files of 17, more than the 16 frames TFDS reads from one file before it
# turns to the next when it interleaves them, so reading in order is tested across files.
TFDS_TRAIN, TFDS_TEST = L.make_frames(3, hw=(480, 640), seed=3), L.make_frames(34, hw=(480, 640), seed=4)


def as_tfds_stores(depth):
    """Depth in metres as TFDS's nyu_depth_v2 keeps it: float16."""
    return depth.astype(np.float16).astype(np.float32)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A data dir holding nyu_depth_v2 prepared by TFDS's own builder, its download replaced by a sparse-to-dense
    folder written here (480x640 frames: the builder's features fix that size). Nothing touches the network."""
    tfds = pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed (optional)")
    root = tmp_path_factory.mktemp("tfds")
    archive = L.write_sparse_to_dense(root / "download", TFDS_TRAIN, TFDS_TEST)
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", lambda _, url: str(archive.parent)):
        builder = tfds.builder("nyu_depth_v2", data_dir=str(root / "data"))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=2))
    assert builder.info.splits["validation"].shard_lengths == [17, 17]
    return str(root / "data")


def match(rgb, written):
    """The index of the written frame whose RGB is `rgb` (TFDS shuffles frames while preparing them)."""
    return next(i for i, (candidate, _) in enumerate(written) if np.array_equal(candidate, rgb))


def test_tfds_frames_are_the_download_in_metres(tfds_dir):
    source = layouts.open_source("tfds:nyu_depth_v2", tfds_data_dir=tfds_dir)
    assert source.layout == "tfds"
    assert {name: len(split) for name, split in source.splits.items()} == {"train": 3, "test": 34}  # validation
    for name, written in (("train", TFDS_TRAIN), ("test", TFDS_TEST)):
        found = []
        for frame in data.frames(source.split(name)):
            found.append(match(frame["rgb"].numpy(), written))
            depth = written[found[-1]][1]
            np.testing.assert_array_equal(frame["depth"].numpy()[..., 0], as_tfds_stores(depth))  # holes still 0
            np.testing.assert_allclose(frame["depth"].numpy()[..., 0], depth, rtol=2.0 ** -11)  # float16: 11 bits
        assert sorted(found) == list(range(len(written)))
    assert train_py.readable_frames(source.split("test")) == 34  # what sizes validation: no blob stage to count


def test_tfds_frame_indices_name_the_same_frames_read_whole_or_in_any_subset(tfds_dir):
    """Evaluation reads a split whole, then its best / median / worst frames again by index: frame i must be
    the same frame both ways, also past the 16th frame of a file, and a subset comes in the order asked for."""
    split = layouts.open_source("tfds:nyu_depth_v2", tfds_data_dir=tfds_dir).split("test")
    whole = {int(f["index"]): f["rgb"].numpy() for f in data.frames(split)}
    assert sorted(whole) == list(range(34))
    for order in ([20, 3, 17, 18, 19], [33], [16, 15, 0]):
        frames = list(data.frames(split.subset(order)))
        assert [int(f["index"]) for f in frames] == list(range(len(order)))  # positions in the subset, as for files
        assert all(np.array_equal(f["rgb"].numpy(), whole[i]) for f, i in zip(frames, order))
    assert list(data.frames(split.subset([]))) == []


def test_tfds_inspect_train_and_evaluate(tfds_dir, tmp_path, capsys):
    assert data.main(data.parse_args(["inspect", "tfds:nyu_depth_v2", "--tfds-data-dir", tfds_dir])) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["test"]["layout"] == "tfds" and stats["test"]["frames"] == 34
    assert stats["test"]["rgb_shape"] == "480x640x3" and stats["test"]["skipped"] == 0
    valid = np.concatenate([as_tfds_stores(depth)[depth > 0] for _, depth in TFDS_TEST])
    assert stats["test"]["depth_min_m"] == pytest.approx(valid.min(), abs=1e-4)
    assert stats["test"]["depth_max_m"] == pytest.approx(valid.max(), abs=1e-4)
    assert stats["test"]["depth_mean_m"] == pytest.approx(valid.mean(), abs=1e-4)

    out = tmp_path / "run"
    flags = [*TINY, "--val-steps", "1", "--data", "tfds:nyu_depth_v2", "--tfds-data-dir", tfds_dir, "--out", str(out)]
    assert train_py.run(flags) == 0
    assert "on 3 frames of tfds:nyu_depth_v2 [train]" in capsys.readouterr().err
    report = tmp_path / "eval"
    args = evaluate.parse_args(["--model", str(out / "model.keras"), "--data", "tfds:nyu_depth_v2",
                                "--tfds-data-dir", tfds_dir, "--out", str(report), "--no-flip", "--limit", "3"])
    assert evaluate.main(args) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["images"] == 3
    # The fair constant, in metres, is the training mean train.py recorded: its first 8 batches of 2 sample the 3
    # training frames unevenly (a batch per epoch), so it lies between the lowest and highest frame's mean.
    frame_means = [as_tfds_stores(depth)[depth > 0].mean() for _, depth in TFDS_TRAIN]
    fair = metrics["constants"][0]
    assert fair["kind"] == "training_mean" and min(frame_means) < fair["depth_m"] < max(frame_means)


def test_tfds_not_prepared_is_one_sentence_saying_how_to_prepare_it(tmp_path, capsys):
    pytest.importorskip("tensorflow_datasets", reason="tensorflow-datasets is not installed (optional)")
    assert data.main(data.parse_args(["inspect", "tfds:nyu_depth_v2", "--tfds-data-dir", str(tmp_path)])) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: tfds:nyu_depth_v2 is not prepared in {tmp_path}")
    assert f"tfds build nyu_depth_v2 --data_dir {tmp_path}" in err[0]
    assert not any(tmp_path.iterdir())  # nothing downloaded or created
    with pytest.raises(layouts.DataError, match="cannot open 'nyu_depth_v3' .Dataset nyu_depth_v3 not found"):
        layouts.open_source("tfds:nyu_depth_v3", tfds_data_dir=str(tmp_path))
    with pytest.raises(layouts.DataError, match="cannot open 'nyu_depth_v2:9.9.9' .*only: 0.0.1"):
        layouts.open_source("tfds:nyu_depth_v2:9.9.9", tfds_data_dir=str(tmp_path))
    with pytest.raises(layouts.DataError, match=r"tfds:mnist has features \['image', 'label'\], not 'image' and"):
        layouts.open_source("tfds:mnist", tfds_data_dir=str(tmp_path))


def test_tfds_missing_package_is_one_sentence_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import tensorflow_datasets` now fails
    out = tmp_path / "run"
    assert train_py.run([*TINY, "--data", "tfds:nyu_depth_v2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: reading a tfds: dataset needs the tensorflow-datasets package")
    assert err[0].endswith("install it with: pip install tensorflow-datasets")
    assert not out.exists()


def test_float_rgb_in_0_1_is_scaled_not_read_as_black(tmp_path):
    """A sparse-to-dense .h5 whose rgb is float in [0, 1] was cast to uint8 as all 0 (black) without a word: it is
    scaled by 255 (float 0-255 rounded), and colour out of both ranges skips the frame with the range found."""
    rgb, depth = L.make_frames(1, seed=3)[0]
    root = tmp_path / "nyudepthv2" / "val" / "official"
    root.mkdir(parents=True)
    stored = {"00001.h5": rgb / 255.0, "00002.h5": rgb.astype(np.float64), "00003.h5": rgb * 2.0 - 3.0}
    for name, values in stored.items():
        with h5py.File(root / name, "w") as f:
            f.create_dataset("rgb", data=np.transpose(values, (2, 0, 1)).astype(np.float32))
            f.create_dataset("depth", data=depth)
    split = layouts.open_source(tmp_path / "nyudepthv2").split("test")
    skip_log = SkipLog()
    read = {int(frame["index"]): frame["rgb"].numpy() for frame in data.frames(split, skipped=skip_log)}
    assert sorted(read) == [0, 1]
    for index in (0, 1):
        np.testing.assert_array_equal(read[index], rgb)
    [skipped] = skip_log.take()
    assert skipped.endswith("00003.h5: ValueError: rgb holds float32 values from -3 to 507; expected uint8 (0-255) "
                            "or floats in [0, 1] or [0, 255]")
