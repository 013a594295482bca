"""The capture layouts (captures.py): TUM RGB-D sequences, color/ + depth/ folders, and folders of captures."""
import json
import logging

import numpy as np
import pytest
import tensorflow as tf

import captures
import data
import layouts
import nyu_layouts as L
from conftest import ROOT
from depth import DepthScale, unpack_target

TUM_STEP_M = 1 / captures.TUM_UNITS_PER_METRE  # TUM's 16-bit depth quantum: 0.2 mm
MM = 0.001
REAL_CAPTURES = ROOT.parent / "shared" / "real_captures"  # its README; absent outside this machine


def read_back(split):
    """[(rgb uint8 [H, W, 3], depth m [H, W])] of every frame, in order."""
    return [(f["rgb"].numpy(), f["depth"].numpy()[..., 0]) for f in data.frames(split)]


def assert_frames(split, want, tolerance_m, exact_rgb=True):
    got = read_back(split)
    assert len(got) == len(want)
    for (rgb, depth), (want_rgb, want_depth) in zip(got, want):
        assert depth.shape == want_depth.shape and (not exact_rgb or np.array_equal(rgb, want_rgb))
        np.testing.assert_allclose(depth, want_depth, atol=tolerance_m)
        assert np.array_equal(depth == 0, want_depth == 0), "holes must stay holes"


# ---------------------------------------------------------------------------
# TUM RGB-D
# ---------------------------------------------------------------------------

def tum_associate_py(first, second, max_difference):
    """TUM's associate.py (rgbd_benchmark_tools) as published, over {timestamp: data} dicts: the reference."""
    first_keys, second_keys = list(first), list(second)
    potential = [(abs(a - b), a, b) for a in first_keys for b in second_keys if abs(a - b) < max_difference]
    potential.sort()
    matches = []
    for _, a, b in potential:
        if a in first_keys and b in second_keys:
            first_keys.remove(a)
            second_keys.remove(b)
            matches.append((a, b))
    matches.sort()
    return matches


def test_associate_takes_the_closest_pairs_first_as_tums_tool_does():
    """A hand-made case where pairing each colour frame with its nearest free depth in time order goes wrong
    (100.030 would take 100.038 and leave 100.040 alone), then random streams against associate.py itself."""
    colour, depth = [100.000, 100.030, 100.040, 100.200], [100.005, 100.015, 100.038, 100.300]
    assert captures.associate(colour, depth) == [(0, 0), (1, 1), (2, 2)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        first = np.round(np.sort(rng.uniform(0, 3, 90)), 6)
        second = np.round(np.sort(rng.uniform(0, 3, 80)), 6)
        want = tum_associate_py(dict.fromkeys(first), dict.fromkeys(second), 0.02)
        assert [(first[i], second[j]) for i, j in captures.associate(first, second)] == want


def test_tum_sequence_reads_the_metres_it_wrote_paired_by_timestamp(tmp_path, caplog):
    """rgb.txt / depth.txt timestamps decide the pairs (the case above): colour frame i gets frame i's depth, at
    5000 per metre; the colour frame and the depth map with no partner within 0.02 s are dropped and counted."""
    frames = L.make_frames(4, hw=(12, 16), seed=3)
    colour_t, depth_t = [100.000, 100.030, 100.040, 100.200], [100.005, 100.015, 100.038, 100.300]
    folder = L.write_tum(tmp_path / "rgbd_dataset_freiburg1_xyz", [(t, rgb) for t, (rgb, _) in zip(colour_t, frames)],
                         [(t, depth) for t, (_, depth) in zip(depth_t, frames)])
    with caplog.at_level(logging.WARNING, logger="depth.layouts"):
        source = layouts.open_source(folder)
    assert source.layout == "tum" and list(source.splits) == ["all"]
    split = source.split("all")
    assert split.keys[1] == ("rgb/100.030000.png", "depth/100.015000.png")
    assert split.depth_codec.units_per_metre == 5000
    assert_frames(split, frames[:3], TUM_STEP_M / 2 + 1e-6)
    assert "1 of 4 colour and 1 of 4 depth frames have no partner within 0.02 s" in caplog.text
    as_mm = layouts.open_source(folder, depth_units_per_metre=1000).split("all")  # the flag overrides TUM's unit
    np.testing.assert_allclose(read_back(as_mm)[0][1], frames[0][1] * 5, atol=MM / 2 + 1e-6)


def test_a_tum_list_line_that_is_not_timestamp_filename_is_named(tmp_path):
    folder = L.write_tum(tmp_path / "seq", [(1.0, L.make_frames(1, hw=(4, 4))[0][0])], [(1.0, np.ones((4, 4)))])
    (folder / "depth.txt").write_text("# depth maps\n1.000000 depth/1.000000.png\nsomething else\n")
    with pytest.raises(layouts.DataError, match=r"depth.txt line 3 is 'something else'; each line must be "
                                                 r"'timestamp filename'"):
        layouts.open_source(folder)


# ---------------------------------------------------------------------------
# color/ + depth/ folders
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("colour_folder, name, depth_name", [
    ("color", "{}", None),  # ScanNet's export: color/0.jpg + depth/0.png (0, 1, ..., 10, 11: numbers, not text)
    ("color", "{:05d}", None),  # Open3D's Azure Kinect reader, its Redwood samples
    ("rgb", "{:06d}", "{}"),  # rgb/ without TUM's lists; names matched by number across zero padding
    ("image", "frame_{}", None),  # names matched as they are
])
def test_colour_and_depth_folders_pair_by_name_or_number(tmp_path, caplog, colour_folder, name, depth_name):
    frames = L.make_frames(12, hw=(16, 16), seed=4)
    folder = L.write_color_depth(tmp_path / "scene0000_00", frames, colour_folder, name, depth_name)
    (folder / colour_folder / name.format(12)).with_suffix(".jpg").write_bytes(L.jpeg_bytes(frames[0][0]))
    with caplog.at_level(logging.WARNING, logger="depth.layouts"):
        source = layouts.open_source(folder)
    assert source.layout == "color-depth" and list(source.splits) == ["all"]
    split = source.split("all")
    if name != "frame_{}":  # numbered frames come in numeric order
        assert [key[0] for key in split.keys[:3]] == [f"{colour_folder}/{name.format(i)}.jpg" for i in range(3)]
        assert_frames(split, frames, MM / 2 + 1e-6, exact_rgb=False)
    assert all(rgb.split("/")[1][:-4] == depth[len("depth/"):-4] for rgb, depth in split.keys) or depth_name
    assert len(split) == 12 and "1 colour files of" in caplog.text and "0 depth files" in caplog.text


def test_colour_and_depth_folders_take_the_depth_unit_flag(tmp_path):
    frames = L.make_frames(2, hw=(8, 8), seed=5)
    folder = L.write_color_depth(tmp_path / "realsense", frames, "color", "{:06d}", units_per_metre=10000)
    assert_frames(layouts.open_source(folder, depth_units_per_metre=10000).split("all"), frames, 0.5e-4 + 1e-6,
                  exact_rgb=False)


# ---------------------------------------------------------------------------
# Folders of captures
# ---------------------------------------------------------------------------

def write_collection(root):
    """Three captures: 25 pairs (blocks 0-9, 10-19 train, 20-24 held out), 12 Open3D-style frames (too short to
    hold any out) and pairs with a test/ folder of their own (2 train, 1 test: the test frame is held out)."""
    L.write_pairs(root / "kitchen", L.make_frames(25, hw=(8, 8), seed=1), "png")
    L.write_color_depth(root / "desk", L.make_frames(12, hw=(8, 8), seed=2), "color", "{:05d}")
    L.write_pairs(root / "lounge" / "train", L.make_frames(2, hw=(8, 8), seed=3), "png")
    L.write_pairs(root / "lounge" / "test", L.make_frames(1, hw=(8, 8), seed=4), "png")
    (root / "README.md").write_text("what each capture is\n")
    return root


def test_a_folder_of_captures_is_one_dataset_holding_out_blocks_or_whole_captures(tmp_path):
    source = layouts.open_source(write_collection(tmp_path / "captures"))
    assert source.layout == "captures"
    counts = {name: len(split) for name, split in source.splits.items()}
    assert counts == {"all": 40, "val": 6, "all-but-val": 34, "desk": 12, "all-but-desk": 28, "kitchen": 25,
                      "all-but-kitchen": 15, "lounge": 3, "all-but-lounge": 37}
    val = source.split("val").keys
    held_out = [f"kitchen/cap{i:03d}_rgb.png" for i in range(20, 25)] + ["lounge/test/cap000_rgb.png"]
    assert [rgb for rgb, _ in val] == held_out
    assert set(val).isdisjoint(source.split("all-but-val").keys)
    assert source.split("desk").keys[0] == ("desk/color/00000.jpg", "desk/depth/00000.png")
    assert_frames(source.split("kitchen"), L.make_frames(25, hw=(8, 8), seed=1), MM / 2 + 1e-6)
    assert captures.held_out_blocks(143) == [*range(20, 30), *range(70, 80), *range(120, 130)]
    # 'A&B': the training frames of every capture but the kitchen, and the kitchen's held-out blocks
    trained = source.split("all-but-val&all-but-kitchen")
    assert (trained.name, len(trained)) == ("all-but-val&all-but-kitchen", 14)  # desk 12, lounge's 2 train frames
    assert [rgb for rgb, _ in source.split("val&kitchen").keys] == held_out[:5]
    with pytest.raises(layouts.DataError, match="no 'nothing' split"):
        source.split("val&nothing")


def test_inspect_lists_a_collections_splits_with_frame_counts(tmp_path, capsys):
    assert data.main(data.parse_args(["inspect", str(write_collection(tmp_path / "captures"))])) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {name: split["frames"] for name, split in stats.items()}["val"] == 6
    assert stats["all-but-val"]["layout"] == "captures" and stats["all"]["depth_units_per_metre"] == 1000


def test_captures_storing_depth_in_different_units_are_one_sentence(tmp_path, capsys):
    root = tmp_path / "captures"
    L.write_pairs(root / "desk", L.make_frames(2, hw=(8, 8)), "png")
    L.write_tum(root / "freiburg1_xyz", [(1.0, L.make_frames(1, hw=(8, 8))[0][0])], [(1.0, np.ones((8, 8)))])
    assert data.main(data.parse_args(["inspect", str(root)])) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {root}: its captures store 16-bit depth in different units (desk at 1000 per metre; "
                   "freiburg1_xyz at 5000 per metre); give each capture folder as a dataset of its own")


def test_tum_sequences_in_one_folder_keep_tums_unit(tmp_path):
    frames = L.make_frames(2, hw=(8, 8), seed=6)
    for i, (rgb, depth) in enumerate(frames):
        L.write_tum(tmp_path / "tum" / f"seq{i}", [(5.0, rgb)], [(5.01, depth)])
    split = layouts.open_source(tmp_path / "tum").split("all")
    assert split.keys[1] == ("seq1/rgb/5.000000.png", "seq1/depth/5.010000.png")
    assert_frames(split, frames, TUM_STEP_M / 2 + 1e-6)


def test_a_capture_named_like_a_split_is_one_sentence(tmp_path):
    L.write_pairs(tmp_path / "caps" / "val", L.make_frames(1, hw=(4, 4)), "png")
    L.write_pairs(tmp_path / "caps" / "b", L.make_frames(1, hw=(4, 4)), "png")
    with pytest.raises(layouts.DataError, match=r"caps/val is named like one of the splits of a folder of captures"):
        layouts.open_source(tmp_path / "caps")


def test_the_real_captures_read_as_one_dataset():
    if not REAL_CAPTURES.exists():
        pytest.skip(f"{REAL_CAPTURES} is absent (the real captures live in ../shared/real_captures)")
    source = layouts.open_source(REAL_CAPTURES)
    counts = {name: len(split) for name, split in source.splits.items()}
    assert counts["all"] == 339 and counts["val"] == 30 + 20 + 20 + 0  # 143, 105, 82 and 9 frames
    assert counts["all-but-hololens_office"] == 339 - 105


# ---------------------------------------------------------------------------
# Frames of another aspect than the input: cropped, not stretched (data.aspect_crop)
# ---------------------------------------------------------------------------

INPUT_HW, TARGET_HW = (24, 32), (12, 16)


def marked_frame(hw, box):
    """rgb uint8 [*hw, 3] black with a white square at box (top, left, size), depth 2 m with 5 m in the square."""
    top, left, size = box
    rgb, depth = np.zeros((*hw, 3), np.uint8), np.full((*hw, 1), 2.0, np.float32)
    rgb[top:top + size, left:left + size], depth[top:top + size, left:left + size] = 255, 5.0
    return rgb, depth


@pytest.mark.parametrize("hw, box, where", [
    # A portrait phone frame, 480 wide and 640 high: the central 480x360 box is rows 140-499, 15 frame pixels per input
    # pixel, so a square at rows 290-319, columns 300-329 is input pixels (10-11, 20-21) and target pixel (5, 10).
    # Stretched, it would fall on rows 10.9-12.0 of the input.
    ((640, 480), (290, 300, 30), (10, 20)),
    # A 1280x720 frame: the central 960x720 box is columns 160-1119, 30 frame pixels per input pixel.
    ((720, 1280), (300, 160 + 600, 60), (10, 20)),
    # A 4:3 frame is left whole: 2 frame pixels per input pixel.
    ((48, 64), (20, 40, 4), (10, 20)),
])
def test_a_frame_of_another_aspect_is_cropped_centrally_not_stretched(hw, box, where):
    rgb, depth = marked_frame(hw, box)
    x, y_true = data.to_example({"rgb": tf.constant(rgb), "depth": tf.constant(depth)}, INPUT_HW, TARGET_HW,
                                DepthScale())
    want = np.zeros(INPUT_HW, np.float32)
    want[where[0]:where[0] + 2, where[1]:where[1] + 2] = 1.0
    np.testing.assert_allclose(x.numpy()[..., 0], want, atol=1e-6)
    target, mask = unpack_target(y_true[None])
    want_m = np.full(TARGET_HW, 2.0, np.float32)
    want_m[where[0] // 2, where[1] // 2] = 5.0
    np.testing.assert_allclose(DepthScale().decode(target).numpy()[0, ..., 0], want_m, rtol=1e-5)
    assert mask.numpy().min() == 1.0
    # An RGB decoded at half scale (a JPEG's reduced decode) is cut where its full-size depth is.
    half = data.to_example({"rgb": tf.constant(rgb[::2, ::2]), "depth": tf.constant(depth)}, INPUT_HW, TARGET_HW,
                           DepthScale())[0]
    np.testing.assert_allclose(half.numpy(), x.numpy(), atol=1e-6)


def test_a_43_frame_is_left_whole_wherever_the_crop_is_drawn():
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    depth = np.random.default_rng(1).uniform(1, 5, (48, 64, 1)).astype(np.float32)
    frame = {"rgb": tf.constant(rgb), "depth": tf.constant(depth)}
    for seed in ([0, 1], [7, 3]):
        cut_rgb, cut_depth = data.aspect_crop(frame["rgb"], frame["depth"], INPUT_HW,
                                              tf.random.stateless_uniform([2], seed, dtype=tf.float64))
        assert np.array_equal(cut_rgb, rgb) and np.array_equal(cut_depth, depth)


def write_row_coded_portraits(folder, count):
    """Portrait frames (480 wide, 640 high) whose image and depth both encode the row: grey = row // 3 and depth =
    1 m + (row // 3) cm, so an image and a depth cut from the same rows average to the same code."""
    code = np.repeat(np.arange(640) // 3, 480).reshape(640, 480)
    rgb = np.repeat(code[..., None], 3, axis=-1).astype(np.uint8)
    return L.write_pairs(folder, [(rgb, (1.0 + 0.01 * code).astype(np.float32))] * count, "png")


def test_the_training_crop_is_random_the_same_for_image_and_depth_and_a_function_of_the_frame(tmp_path):
    """Each training frame's crop sits at a place drawn from its seed: image and target are cut from the same rows
    (their row codes agree), the places differ between frames, and two workers' shards (loop.shard_select) cut
    exactly what one device cuts, over two passes."""
    import loop

    split = layouts.open_source(write_row_coded_portraits(tmp_path / "phone", 4)).split("all")
    options = {"input_hw": INPUT_HW, "target_hw": TARGET_HW, "training": True, "seed": 5,
               "augmentation": data.Augment(channel_swap=0, brightness=0, contrast=0, gamma=0)}
    one = list(data.make_dataset(split, batch_size=2, **options).repeat(2))
    tops = set()
    for x, y_true in one:
        image_code = x.numpy()[..., 0].reshape(-1, 12, 2, 32).mean(axis=2)[..., ::2] * 255  # to target rows
        target, _ = unpack_target(y_true)
        depth_code = (DepthScale().decode(target).numpy()[..., 0] - 1.0) / 0.01
        np.testing.assert_allclose(image_code, depth_code, atol=0.05)
        tops.update(np.round(image_code[:, 0, 0] * 3).astype(int))  # about the crop's top row (0-280)
    assert len(tops) >= 4 and max(tops) - min(tops) > 30, tops
    shards = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        select = loop.shard_select(context, per_replica_batch=1, training=True)
        shards.append(list(data.make_dataset(split, batch_size=1, select=select, **options).repeat(2)))
    for k, (x, y_true) in enumerate(one):
        np.testing.assert_array_equal(x, np.concatenate([shards[0][k][0], shards[1][k][0]]))
        np.testing.assert_array_equal(y_true, np.concatenate([shards[0][k][1], shards[1][k][1]]))
