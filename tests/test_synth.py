"""synth: frames have the right form, the geometry agrees with hand-computed pinhole answers, and the written
dataset reads back as rendered."""
import subprocess
import sys

import numpy as np
import pytest

import data
import layouts
import nyu
import synth
from conftest import ROOT
from nyu import DEPTH_CODECS
from synth import camera, cli, kinect, raycast, scene
from synth.dataset import frame_seed

ROOM_M = (10.0, 20.0, 3.0)  # wide and long enough that the walls only appear where a test expects them
GREY = scene.Material((0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def grid():
    return raycast.nyu_pixel_grid()


@pytest.fixture(scope="module")
def frames():
    return {seed: synth.render_frame(seed) for seed in range(8)}


def level_camera(x=5.0, y=1.0, height=1.5, yaw_deg=0.0, pitch_deg=0.0):
    rotation = scene.camera_rotation(np.radians(yaw_deg), np.radians(pitch_deg), 0.0)
    return scene.Camera(np.array([x, y, height]), rotation)


def centre_pixel(grid):
    return int(round(grid.intrinsics["cy"])), int(round(grid.intrinsics["cx"]))


# --- the public frame ---

def test_frame_shapes_and_dtypes(frames):
    rgb, depth = frames[0]
    assert rgb.shape == (*nyu.FRAME_HW, 3) and rgb.dtype == np.uint8
    assert depth.shape == nyu.FRAME_HW and depth.dtype == np.float32
    assert rgb.flags["C_CONTIGUOUS"] and depth.flags["C_CONTIGUOUS"]


def test_same_seed_same_bytes_and_seeds_differ(frames):
    rgb, depth = synth.render_frame(3)
    assert rgb.tobytes() == frames[3][0].tobytes() and depth.tobytes() == frames[3][1].tobytes()
    assert not np.array_equal(frames[3][0], frames[4][0])
    assert not np.array_equal(frames[3][1], frames[4][1])


def test_valid_depths_lie_in_kinect_range(frames):
    for _, depth in frames.values():
        valid = depth[depth > 0]
        assert np.isfinite(depth).all()
        assert valid.min() >= 0.5 and valid.max() <= 10.0


def test_some_but_not_many_pixels_invalid(frames):
    invalid = [float(np.mean(depth == 0)) for _, depth in frames.values()]
    assert all(0.0 < f < 0.2 for f in invalid), invalid
    assert 0.005 < np.median(invalid) < 0.08, invalid


def test_rgb_is_a_complete_exposed_image(frames):
    for rgb, _ in frames.values():
        # neither black nor blown out: camera_effects' +0.7 stops can make a white room bright, not white
        assert 40 < rgb.mean() < 240 and np.mean(rgb == 255) < 0.5
        assert rgb.std() > 15  # there is structure, not a flat fill


def test_camera_effects_gain_a_grey_frame_in_linear_light_and_add_its_noise():
    """A uniform grey frame comes out, averaged over the frame, at (grey^2.2 x 2^stops x its white-balance gain)^(1/2.2)
    per channel, and grainy: the drawn sensor noise survives JPEG in part. The draws are replayed from a twin
    generator, in camera_effects' order."""
    for seed in (3, 4):
        grey = np.full((96, 128, 3), 100, np.uint8)
        out = camera.camera_effects(grey, np.random.default_rng(seed)).astype(float)
        twin = np.random.default_rng(seed)
        gains = 2.0 ** twin.uniform(*camera.EXPOSURE_STOPS) * np.exp(twin.normal(0.0, camera.WHITE_BALANCE_SIGMA, 3))
        twin.uniform(*camera.BLUR_SIGMA_PX)
        sigma = twin.uniform(*camera.NOISE_SIGMA)
        want = np.clip((100 / 255) ** 2.2 * gains, 0, 1) ** (1 / 2.2) * 255
        # zero-mean noise averages out over 12288 pixels; JPEG stores a flat colour with its chroma quantised: a level or three off in RGB
        assert np.abs(out.mean(axis=(0, 1)) - want).max() <= 3.0, (out.mean(axis=(0, 1)), want)
        # a flat frame through JPEG alone stays flat (std 0); JPEG quantises much of the noise away (most of it at
        # quality 50), never adds more
        assert 0.1 * sigma < out.std(axis=(0, 1)).mean() < 1.05 * sigma, (out.std(axis=(0, 1)), sigma)
    assert np.abs(want - 100).max() > 20  # the last draw darkened the frame: the gains did act


# --- geometry against hand-computed answers ---

def test_camera_rotation_conventions():
    level = scene.camera_rotation(0.0, 0.0, 0.0)
    np.testing.assert_allclose(level @ [0, 0, 1], [0, 1, 0], atol=1e-12)  # looks along +y
    np.testing.assert_allclose(level @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # image down is world down
    tilted = scene.camera_rotation(0.0, np.radians(10), 0.0)
    assert (tilted @ [0, 0, 1])[2] < 0  # positive pitch looks down
    np.testing.assert_allclose(scene.camera_rotation(np.radians(90), 0.0, 0.0) @ [0, 0, 1], [-1, 0, 0], atol=1e-12)


def test_floor_depth_follows_the_pinhole_model(grid):
    """Level camera 1.5 m up: a floor pixel in row v has z-depth 1.5 fy / (v - cy), the same across the row."""
    hits = raycast.trace(level_camera(height=1.5), ROOM_M, (), grid)
    rows = np.arange(400, nyu.FRAME_HW[0])
    assert (hits.surface[rows] == scene.FLOOR).all()
    expected = 1.5 * nyu.INTRINSICS["fy"] / (rows - nyu.INTRINSICS["cy"])
    np.testing.assert_allclose(hits.depth_m[rows], np.repeat(expected[:, None], nyu.FRAME_HW[1], axis=1), rtol=1e-5)
    # by hand: 1.5 * 519.4696 / (479 - 253.7362) = 3.4591 m
    assert abs(hits.depth_m[479, 0] - 3.4591) < 1e-3


def test_wall_depth_is_z_depth_not_ray_length(grid):
    """The far wall is 4 m ahead of a level camera: every pixel on it reads 4 m, corners included."""
    hits = raycast.trace(level_camera(y=1.0), (10.0, 5.0, 3.0), (), grid)
    on_wall = hits.surface == scene.WALL_Y1
    assert grid.ray_length[on_wall].max() > 1.2  # its corner pixels' rays are over 4.8 m long
    np.testing.assert_allclose(hits.depth_m[on_wall], 4.0, rtol=1e-5)


def test_pitch_and_yaw_aim_the_optical_axis():
    """With the principal point on a pixel centre, that pixel's ray is the optical axis."""
    grid = raycast.pixel_grid({"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0}, (480, 640))
    down = raycast.trace(level_camera(height=1.2, pitch_deg=30), ROOM_M, (), grid)
    assert down.surface[240, 320] == scene.FLOOR
    assert abs(down.depth_m[240, 320] - 2.4) < 1e-4  # 1.2 m / sin 30 deg
    left = raycast.trace(level_camera(x=5.0, y=10.0, yaw_deg=90), ROOM_M, (), grid)
    assert left.surface[240, 320] == scene.WALL_X0
    assert abs(left.depth_m[240, 320] - 5.0) < 1e-4


def test_nearer_objects_occlude_the_wall(grid):
    """A box whose front face is 2.5 m ahead, and a cylinder behind it to the side, hide the wall 19 m away."""
    box = scene.Box((5.0, 4.0), (0.5, 0.5), (0.0, 2.5), 0.0, GREY)
    cylinder = scene.Cylinder((7.0, 8.0), 0.5, (0.0, 2.5), GREY)
    hits = raycast.trace(level_camera(y=1.0), ROOM_M, (box, cylinder), grid)
    v, u = centre_pixel(grid)
    assert hits.surface[v, u] == scene.FIRST_PRIMITIVE
    assert abs(hits.depth_m[v, u] - 2.5) < 1e-4
    # the cylinder's axis is 7 m ahead and 2 m right: u = cx + fx * 2 / 7, its nearest point 6.5 m away
    u_cylinder = int(round(nyu.INTRINSICS["cx"] + nyu.INTRINSICS["fx"] * 2.0 / 7.0))
    assert hits.surface[v, u_cylinder] == scene.FIRST_PRIMITIVE + 1
    assert abs(hits.depth_m[v, u_cylinder] - (np.hypot(7.0, 2.0) - 0.5) * 7.0 / np.hypot(7.0, 2.0)) < 0.02
    # 120 px left of centre the ray passes the box (0.58 m off axis at 2.5 m) and reaches the far wall
    assert hits.surface[v, 205] == scene.WALL_Y1 and abs(hits.depth_m[v, 205] - 19.0) < 1e-3


def test_rotated_box_is_hit_on_its_corner(grid):
    """A box turned 45 deg presents an edge: the centre ray meets it half a diagonal before its centre."""
    box = scene.Box((5.0, 5.0), (0.5, 0.5), (0.0, 2.5), np.pi / 4, GREY)
    hits = raycast.trace(level_camera(y=1.0), ROOM_M, (box,), grid)
    v, u = centre_pixel(grid)
    assert abs(hits.depth_m[v, u] - (4.0 - 0.5 * np.sqrt(2.0))) < 5e-3


# --- what the Kinect leaves out ---

def test_projector_shadow_lies_left_of_a_near_edge(grid):
    """A box face 2 m ahead of a wall 4 m ahead: the projector, 7.5 cm to the right, leaves a band of
    fx * b * (1/2 - 1/4) = 9.7 px unlit just left of the box, and nothing on its right."""
    box = scene.Box((5.0, 3.25), (0.5, 0.25), (0.0, 3.0), 0.0, GREY)
    hits = raycast.trace(level_camera(y=1.0), (10.0, 5.0, 3.0), (box,), grid)
    v, _ = centre_pixel(grid)
    on_box = np.flatnonzero(hits.surface[v] == scene.FIRST_PRIMITIVE)
    shadow = kinect.projector_shadow(hits.depth_m, nyu.INTRINSICS["fx"], kinect.KINECT_BASELINE_M)[v]
    shadowed = np.flatnonzero(shadow)
    assert 9 <= shadowed.size <= 10
    assert shadowed.max() == on_box.min() - 1 and np.all(np.diff(shadowed) == 1)
    assert not shadow[on_box.max() + 1:].any()


def test_out_of_range_depth_is_invalid(grid):
    rng = np.random.default_rng(0)
    no_return = np.zeros(nyu.FRAME_HW, bool)
    for depth_m in (0.3, 10.5):
        assert not kinect.kinect_depth(np.full(nyu.FRAME_HW, depth_m, np.float32), no_return, grid, rng).any()
    kept = kinect.kinect_depth(np.full(nyu.FRAME_HW, 5.0, np.float32), no_return, grid, rng)
    assert np.all((kept == 0) | (kept == 5.0)) and np.mean(kept > 0) > 0.95
    glass = no_return.copy()
    glass[100:200, 100:200] = True
    assert not kinect.kinect_depth(np.full(nyu.FRAME_HW, 5.0, np.float32), glass, grid, rng)[100:200, 100:200].any()


# --- the written dataset ---

DATASET_SEED = 3
SLACK_M = 1e-5  # float32 decoding of a stored depth, on top of the file's own rounding


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A tiny synthetic set, written from this process (its one rendering worker is a spawned process)."""
    out = tmp_path_factory.mktemp("synth")
    assert synth.write_synthetic(out, train=3, test=2, seed=DATASET_SEED, workers=1) == out
    return out


def rendered(split_name, count):
    return [synth.render_frame(frame_seed(DATASET_SEED, split_name, i)) for i in range(count)]


def read_back(split):
    """[(rgb uint8 [H, W, 3], depth m [H, W])] of every frame, in order, through data.py's pipeline."""
    return [(f["rgb"].numpy(), f["depth"].numpy()[..., 0]) for f in data.frames(split)]


def test_written_set_reads_back_as_rendered(written):
    """The folder (train from nyu_data.zip, test from nyu_test.zip) and nyu_data.zip's own 16-bit test copy
    read back as the frames rendered for their seeds, each depth within half its file's unit."""
    bundle, pairs = layouts.open_source(written), layouts.open_source(written / "nyu_data.zip")
    assert {name: len(split) for name, split in bundle.splits.items()} == {"train": 3, "test": 2}
    assert {name: len(split) for name, split in pairs.splits.items()} == {"train": 3, "test": 2}
    assert bundle.split("test").crop == nyu.EIGEN_CROP
    train, test = rendered("train", 3), rendered("test", 2)
    for split, frames, depth_format in (
        (bundle.split("train"), train, "png8_10m"),
        (pairs.split("test"), test, "png16_mm"),
        (bundle.split("test"), test, "raw_f32_m"),
    ):
        assert split.depth_format == depth_format
        half_unit_m = 0.5 / DEPTH_CODECS[depth_format].units_per_metre if depth_format != "raw_f32_m" else 0.0
        got = read_back(split)
        assert len(got) == len(frames)
        for (rgb, depth), (want_rgb, want_depth) in zip(got, frames):
            if depth_format == "raw_f32_m":
                np.testing.assert_array_equal(depth, want_depth)  # float32 metres, stored as rendered
            else:
                np.testing.assert_allclose(depth, want_depth, rtol=0, atol=half_unit_m + SLACK_M)
            assert np.array_equal(depth == 0, want_depth == 0), "holes must stay holes"
            if split.name == "test":  # PNG and raw RGB are lossless; the training JPEGs are not
                np.testing.assert_array_equal(rgb, want_rgb)
            else:
                assert np.abs(rgb.astype(int) - want_rgb).mean() < 8  # quality 95: 1-3 levels; another frame: tens


def test_ensure_synthetic_keeps_an_existing_set(written):
    before = {p.name: p.stat().st_mtime_ns for p in written.iterdir()}
    assert synth.ensure_synthetic(written, train=1, test=1) == written
    assert {p.name: p.stat().st_mtime_ns for p in written.iterdir()} == before


def test_python_m_synth_writes_both_zips(tmp_path):
    out = tmp_path / "synth"
    run = subprocess.run(
        [sys.executable, "-m", "synth", "--out", str(out), "--train", "2", "--test", "1", "--workers", "1"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["nyu_data.zip", "nyu_test.zip"]
    assert run.stdout == f"wrote {out / 'nyu_data.zip'} (2 train + 1 test frames) and {out / 'nyu_test.zip'}\n"


@pytest.mark.parametrize("flag, value, message", [
    ("--train", "-1", "--train must be zero or more, got -1"),
    ("--workers", "0", "--workers must be positive, got 0"),
])
def test_bad_flag_is_a_usage_error(flag, value, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.parse_args([flag, value])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_an_out_that_cannot_be_written_is_one_sentence(tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    out = tmp_path / "a_file" / "synth"  # refused whoever runs the test, root included
    assert cli.main(cli.parse_args(["--out", str(out), "--train", "1", "--test", "1", "--workers", "1"])) == 2
    assert capsys.readouterr().err == f"error: cannot write {out} (Not a directory); choose another --out\n"
