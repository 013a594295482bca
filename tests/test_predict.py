"""predict.py: depth at the input's own size with flip test-time augmentation, one traced function per model,
odd image files through the command line, depth files that agree, and point clouds with the right geometry."""
import errno
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import inference
import photos
import predict
import filecheck
from depth import DepthScale
from model import build_unet
from nyu import INTRINSICS, MAX_DEPTH_M, MIN_DEPTH_M, scaled_intrinsics

ROOT = Path(__file__).resolve().parents[1]
INPUT_HW = (48, 64)


def tiny_unet(seed=0):
    """A 48x64 UNet predicting metres around 3 m, give or take about 1 m, so its depth varies inside the
    default range [MIN_DEPTH_M, MAX_DEPTH_M] instead of sitting at a clip limit as an untrained inverse-depth
    model's does."""
    keras.utils.set_random_seed(seed)
    model = build_unet(INPUT_HW, base_filters=4, depth_scale=DepthScale("metres"))
    kernel, bias = model.get_layer("output_conv").get_weights()
    model.get_layer("output_conv").set_weights([kernel * 10.0, bias + 3.0])
    return model


def mirror_symmetric(model):
    """Make every conv kernel left-right symmetric, so the network commutes with a horizontal flip."""
    for layer in model.layers:
        if layer.name.endswith("_conv") or layer.name == "output_conv":
            kernel, bias = layer.get_weights()  # kernel [kh, kw, in, out]
            layer.set_weights([(kernel + kernel[:, ::-1]) / 2, bias])
    return model


def random_rgb(hw, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return tiny_unet()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path


def test_depth_comes_back_at_the_input_size_in_range(model):
    batch = np.stack([random_rgb((75, 100), seed) for seed in range(2)])
    depth = predict.predict_depth_m(model, batch)
    assert depth.shape == (2, 75, 100) and depth.dtype == np.float32
    assert depth.min() >= MIN_DEPTH_M and depth.max() <= MAX_DEPTH_M and depth.std() > 0.01
    single = predict.predict_depth_m(model, batch[1])
    assert single.shape == (75, 100)
    np.testing.assert_allclose(single, depth[1], atol=1e-5)


def test_flip_averages_with_the_mirrored_prediction_in_metres(model):
    rgb = random_rgb((60, 90), seed=3)
    plain = predict.predict_depth_m(model, rgb, flip=False)
    mirrored = predict.predict_depth_m(model, rgb[:, ::-1], flip=False)[:, ::-1]
    assert np.abs(plain - mirrored).max() > 0.01  # the model is not symmetric, so the average is a real test
    np.testing.assert_allclose(predict.predict_depth_m(model, rgb, flip=True), (plain + mirrored) / 2, atol=1e-5)


def test_flip_changes_nothing_for_a_symmetric_input_and_network():
    model = mirror_symmetric(tiny_unet(seed=1))
    half = random_rgb((60, 40), seed=4)
    rgb = np.concatenate([half, half[:, ::-1]], axis=1)  # 60x80, mirror-symmetric
    plain = predict.predict_depth_m(model, rgb, flip=False)
    assert plain.std() > 0.01
    np.testing.assert_allclose(predict.predict_depth_m(model, rgb, flip=True), plain, atol=1e-5)


def test_the_network_to_metres_graph_averages_the_mirrored_prediction_mirrored_back():
    """inference.network_depth_m, the graph predict.py runs and export.py exports, on a "network" that is not
    mirror-symmetric: 2 m plus the red channel weighted by a ramp 0..1 across the columns. On a red image its
    direct prediction is the ramp plus 2 m, its mirrored one mirrored back the reversed ramp, and their average
    2.5 m everywhere, from one call on the image and its mirror; without the flip, the ramp clipped to the range."""
    column_weight = np.linspace(0.0, 1.0, 5, dtype=np.float32)[:, None]  # [W=5, 1]
    red = np.zeros([2, 3, 5, 3], np.float32)
    red[..., 0] = 1.0
    calls = []

    def forward(batch):
        calls.append(batch.shape[0])
        return 2.0 + batch[..., :1] * column_weight

    flipped = inference.network_depth_m(forward, red, DepthScale("metres"), flip=True).numpy()
    assert calls == [4] and flipped.shape == (2, 3, 5, 1)
    np.testing.assert_allclose(flipped, 2.5, atol=1e-6)
    plain = inference.network_depth_m(forward, red, DepthScale("metres", 0.1, 2.5), flip=False).numpy()
    np.testing.assert_allclose(plain[1, 2, :, 0], [2.0, 2.25, 2.5, 2.5, 2.5], atol=1e-6)  # clipped at 2.5 m


def test_one_traced_function_per_model_for_every_batch_and_image_size(model):
    for batch, hw in ((1, (30, 40)), (3, (75, 100)), (2, (480, 640))):
        predict.predict_depth_m(model, np.stack([random_rgb(hw)] * batch))
    forward = predict.forward_pass(model)
    assert forward is predict.forward_pass(model)
    assert forward.experimental_get_tracing_count() == 1


def test_read_rgb_scales_16_bit_grey_and_composites_alpha(tmp_path):
    grey16 = np.array([[0, 257, 32896, 65535]], np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    np.testing.assert_array_equal(photos.read_rgb(tmp_path / "g16.png")[0, :, 0], [0, 1, 128, 255])
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: unchanged
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(photos.read_rgb(tmp_path / "a.png")[0], [[10, 20, 30], [255, 255, 255]])


def odd_inputs(folder):
    """{file name: (height, width)} of images in awkward modes and sizes, plus one corrupt file, in `folder`."""
    folder.mkdir()
    rgb = random_rgb((30, 40), seed=5)
    rgba = np.dstack([rgb, np.linspace(0, 255, 40, dtype=np.uint8)[None].repeat(30, 0)])
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    Image.fromarray((np.arange(47 * 33).reshape(33, 47) * 40).astype(np.uint16)).save(folder / "grey16.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (folder / "notes.txt").write_text("not an image, and not picked up from a folder")
    return {"rgba": (30, 40), "grey": (30, 40), "grey16": (33, 47), "palette": (30, 40)}


def test_cli_writes_every_good_input_at_its_size_and_names_the_bad_one(tmp_path, model_path):
    """The one run of `python predict.py` as a user types it; the other command-line tests call main in-process."""
    expected = odd_inputs(tmp_path / "in")
    (tmp_path / "photos").mkdir()
    Image.fromarray(random_rgb((750, 1000), seed=6)).save(tmp_path / "photos" / "big.jpg", quality=90)
    expected["big"] = (750, 1000)
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "predict.py", "--model", str(model_path), str(tmp_path / "in"),
                          str(tmp_path / "photos" / "*.jpg"), "--out", str(out), "--bs", "3"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert run.stdout.strip() == f"wrote depth for 5 of 6 images to {out} (X_depth.png: 16-bit PNG in millimetres)"
    assert "broken.png: not a readable image" in run.stderr and "Traceback" not in run.stderr
    assert "notes.txt" not in run.stderr
    # Standard error is a pipe here, as a log file: progress in whole lines, never a carriage return.
    assert "\r" not in run.stderr and "predict: 100%|##########| 6/6 " in run.stderr
    for stem, hw in expected.items():
        depth_m = np.load(out / f"{stem}_depth.npy")
        assert depth_m.shape == hw and depth_m.dtype == np.float32
        depth_mm = np.asarray(Image.open(out / f"{stem}_depth.png"))
        assert depth_mm.dtype == np.uint16 and depth_mm.shape == hw
        assert np.abs(depth_mm / 1000.0 - depth_m).max() <= 0.0005 + 1e-6
        assert Image.open(out / f"{stem}_depth_color.png").mode in ("RGB", "RGBA")
    assert not list(out.glob("broken*"))


def test_depth_png16_is_rounded_millimetres_with_0_for_no_depth_and_counts_clipping(tmp_path):
    depth_m = np.array([[1.2344, 1.2346, 0.0, 70.0, np.nan, 65.5354]], np.float32)
    assert predict.save_depth_png16(tmp_path / "d.png", depth_m) == 1  # 70 m is past 65.535 m; 65.5354 rounds in
    with Image.open(tmp_path / "d.png") as png:
        stored = np.asarray(png)
        assert png.text == {"depth_units_per_metre": "1000"}  # the unit travels with the file
    assert stored.dtype == np.uint16 and stored.tolist() == [[1234, 1235, 0, 65535, 0, 65535]]


def test_png_unit_is_the_finest_that_holds_the_models_range(tmp_path):
    assert predict.png_codec_for(MAX_DEPTH_M) == predict.png_codec_for(65.535) == "png16_mm"
    assert predict.png_codec_for(80.0) == "png16_kitti"  # DenseDepth's kitti.h5 range: 1/256 m up to 256 m
    depth_m = np.array([[79.99, 0.5]], np.float32)
    assert predict.save_depth_png16(tmp_path / "k.png", depth_m, "png16_kitti") == 0
    with Image.open(tmp_path / "k.png") as png:
        assert png.text == {"depth_units_per_metre": "256"}
        np.testing.assert_allclose(np.asarray(png) / 256.0, depth_m, atol=0.5 / 256)


def test_a_full_or_read_only_output_folder_is_one_sentence(tmp_path, model_path, monkeypatch, capsys):
    Image.fromarray(random_rgb((30, 40))).save(tmp_path / "a.png")

    def disk_full(out_dir, stem, *rest):
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / f"{stem}_depth.png"))

    monkeypatch.setattr(predict, "write_outputs", disk_full)
    code = predict.main(predict.parse_args(["--model", str(model_path), str(tmp_path / "a.png"), "--out", str(tmp_path)]))
    assert code == 2
    assert capsys.readouterr().err.endswith(
        f"error: cannot write {tmp_path / 'a_depth.png'} (No space left on device); choose another --out\n")


def nan_model(tmp_path):
    """A saved tiny UNet whose output is NaN everywhere, as after a diverged training run."""
    model = tiny_unet()
    kernel, bias = model.get_layer("output_conv").get_weights()
    model.get_layer("output_conv").set_weights([kernel, np.full_like(bias, np.nan)])
    model.save(tmp_path / "nan.keras")
    return tmp_path / "nan.keras"


def test_non_finite_predictions_are_refused_not_written(tmp_path, capsys):
    Image.fromarray(random_rgb((30, 40))).save(tmp_path / "a.png")
    code = predict.main(predict.parse_args(["--model", str(nan_model(tmp_path)), str(tmp_path / "a.png"),
                                            "--out", str(tmp_path / "out")]))
    err = capsys.readouterr().err
    assert code == 2 and f"error: model {tmp_path / 'nan.keras'} predicted non-finite depth for 1 of 1 images" in err
    assert not list((tmp_path / "out").glob("a_depth*"))


def read_ply(path):
    """(vertex count from the header, structured array of x y z red green blue)."""
    blob = Path(path).read_bytes()
    header, body = blob.split(b"end_header\n", 1)
    lines = header.decode("ascii").splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"]
    count = int(next(line for line in lines if line.startswith("element vertex")).split()[-1])
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    return count, np.frombuffer(body, dtype)


def test_ply_back_projects_with_nyu_intrinsics_scaled_or_the_given_ones(tmp_path, model_path):
    rgb = random_rgb((60, 80), seed=7)
    Image.fromarray(rgb).save(tmp_path / "room.png")
    v, u = 10, 70  # row, column of the pixel checked by hand
    for extra, name in (([], "nyu"), (["--fx", "100", "--fy", "50", "--cx", "40", "--cy", "30"], "given")):
        out = tmp_path / name
        args = predict.parse_args(["--model", str(model_path), str(tmp_path / "room.png"), "--out", str(out), "--ply", *extra])
        assert predict.main(args) == 0
        count, vertices = read_ply(out / "room.ply")
        assert count == len(vertices) == 60 * 80
        z = np.load(out / "room_depth.npy")[v, u]
        point = vertices[v * 80 + u]  # row-major order
        if name == "nyu":
            # 80x60 is 1/8 of 640x480: fx = 518.8579 / 8 = 64.8572, cx = (325.5824 + 0.5) / 8 - 0.5 = 40.2603,
            # fy = 519.4696 / 8 = 64.9337, cy = (253.7362 + 0.5) / 8 - 0.5 = 31.2795.
            x, y = (70 - 40.2603) * z / 64.8572, (10 - 31.2795) * z / 64.9337
        else:
            x, y = (70 - 40) * z / 100, (10 - 30) * z / 50  # 0.3 z and -0.4 z
        np.testing.assert_allclose([point["x"], point["y"], point["z"]], [x, y, z], rtol=1e-4)
        assert (point["red"], point["green"], point["blue"]) == tuple(rgb[v, u])


def test_a_portrait_cloud_keeps_square_pixels_and_says_which_camera(tmp_path, model_path, capsys):
    """A 300x400 portrait (not 4:3 landscape) without given intrinsics: one focal length, NYU's horizontal field of
    view across its 400-pixel side, fx = fy = 518.8579 * 400 / 640 = 324.2862, centred at (149.5, 199.5); scaling
    NYU's fx and fy apart gave fx 243.2 and fy 432.9, a cloud stretched 1.8 times in y."""
    rgb = random_rgb((400, 300), seed=8)  # [H, W, 3]: 300 wide, 400 tall
    Image.fromarray(rgb).save(tmp_path / "portrait.png")
    out = tmp_path / "out"
    args = predict.parse_args(["--model", str(model_path), str(tmp_path / "portrait.png"), "--out", str(out), "--ply"])
    assert predict.main(args) == 0
    camera, source = predict.photo_intrinsics((400, 300))
    assert camera == pytest.approx({"fx": 324.2862, "fy": 324.2862, "cx": 149.5, "cy": 199.5}, rel=1e-6)
    said = ("portrait.ply: camera fx 324.29 fy 324.29 cx 149.50 cy 199.50 pixels (square pixels: NYU's horizontal "
            "field of view (63.3 deg) across the 400-pixel longer side of 300x400, centred (give --fx --fy --cx --cy "
            "if known))")
    assert said in capsys.readouterr().err.splitlines()
    header = (out / "portrait.ply").read_bytes().split(b"end_header")[0].decode("ascii")
    assert "comment metres; camera fx 324.29 fy 324.29 cx 149.50 cy 199.50 pixels (square pixels" in header
    _, vertices = read_ply(out / "portrait.ply")
    z = np.load(out / "portrait_depth.npy")
    for v, u in ((0, 0), (399, 299), (50, 250)):
        point = vertices[v * 300 + u]
        expected = [(u - 149.5) * z[v, u] / 324.2862, (v - 199.5) * z[v, u] / 324.2862, z[v, u]]
        np.testing.assert_allclose([point["x"], point["y"], point["z"]], expected, rtol=1e-4)


def test_a_4_3_landscape_photo_keeps_nyus_calibration():
    camera, source = predict.photo_intrinsics((750, 1000))
    assert camera == pytest.approx(scaled_intrinsics((750, 1000)))
    assert source == "NYU's Kinect intrinsics scaled from 640x480 to 1000x750"


def test_scaled_intrinsics_keep_pixel_centres():
    assert scaled_intrinsics((480, 640)) == pytest.approx(INTRINSICS)
    half = scaled_intrinsics((240, 320))
    assert half["fx"] == pytest.approx(518.8579 / 2) and half["cx"] == pytest.approx((325.5824 + 0.5) / 2 - 0.5)


def test_usage_errors(tmp_path, model_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args(["--model", str(model_path), "x.png", "--ply", "--fx", "100"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        predict.parse_args(["--model", str(model_path), "x.png", "--fx", "1", "--fy", "1", "--cx", "1", "--cy", "1"])
    capsys.readouterr()
    args = predict.parse_args(["--model", str(model_path), str(tmp_path / "none_*.png"), "--out", str(tmp_path / "o")])
    assert predict.main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: no image file matched {tmp_path / 'none_*.png'}"


def test_bad_model_path_is_one_sentence_and_exit_2(tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    args = predict.parse_args(["--model", str(tmp_path / "missing.keras"), str(tmp_path / "a.png"),
                               "--out", str(tmp_path / "out")])
    assert predict.main(args) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: no model file at {tmp_path / 'missing.keras'}"]


def test_a_big_jpeg_is_decoded_at_the_networks_scale_and_depth_written_at_its_own_size(tmp_path, model):
    """What keeps an 80-megapixel photograph's peak memory near its depth map's own size (measured in the README):
    the JPEG decoded at the scale the network input needs, depth resized once, and a preview drawn from a
    downscaled map. Here a 1600x2000 JPEG: decoded at 1/8 for a 48x64 input, depth at 1600x2000 all the same,
    within a millimetre of the full decode's."""
    import figures

    rgb = np.repeat(np.repeat(random_rgb((100, 125), seed=9), 16, axis=0), 16, axis=1)  # smooth at 1/16
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=95)
    small, hw = photos.open_rgb(tmp_path / "big.jpg", INPUT_HW)
    assert small.shape == (200, 250, 3) and hw == (1600, 2000)
    full = photos.read_rgb(tmp_path / "big.jpg")
    reduced = predict.predict_depth_m(model, small, out_hw=hw)
    assert reduced.shape == hw
    np.testing.assert_allclose(reduced, predict.predict_depth_m(model, full), atol=0.05)  # a grey level or so apart
    preview = figures.downscaled(reduced, figures.PREVIEW_SIDE)
    assert preview.shape == (400, 500)  # a quarter (2000 / 600 rounded up), box-averaged:
    assert preview[1, 2] == pytest.approx(reduced[4:8, 8:12].mean(), rel=1e-5)


def test_dollar_signs_in_the_model_and_photo_paths_are_plain_text(tmp_path, model):
    """'my $$ photo.png' titles its colour preview; Matplotlib read it as mathtext and predict.py stopped with a
    traceback. Drawn as plain text, every file is written."""
    model_path = tmp_path / "runs$$" / "model.keras"
    model_path.parent.mkdir()
    model.save(model_path)
    Image.fromarray(random_rgb((30, 40))).save(tmp_path / "my $$ photo.png")
    Image.fromarray(random_rgb((30, 40))).save(tmp_path / "cost $5 or $6.png")
    out = tmp_path / "out $HOME"
    args = predict.parse_args(["--model", str(model_path), str(tmp_path / "*.png"), "--out", str(out)])
    assert predict.main(args) == 0
    assert sorted(p.name for p in out.glob("*_color.png")) == ["cost $5 or $6_depth_color.png",
                                                                "my $$ photo_depth_color.png"]


def test_a_recursive_glob_through_symlink_loops_finds_each_photo_once(tmp_path, model_path, capsys):
    """photos/loop -> photos: glob.glob("photos/**/*.png", recursive=True) listed a.png 41 times (until "too many
    levels of symbolic links"), and with a second link in the loop it never ends. Each file once, by its real path;
    a folder linked from outside the loop is still searched."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for path in (folder / "a.png", folder / "sub" / "b.png", tmp_path / "elsewhere" / "c.png"):
        Image.fromarray(random_rgb((30, 40))).save(path)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    pattern = str(folder / "**" / "*.png")
    found, unmatched, _ = photos.find_inputs([pattern])
    assert found == [folder / "a.png", folder / "sub" / "b.png"] and unmatched == []

    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)  # a second way round the loop
    (folder / "sub" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found, *_ = photos.find_inputs([pattern, str(folder / "*" / "*.png")])  # loop/a.png is a.png again
    assert found == [folder / "a.png", folder / "sub" / "b.png", folder / "sub" / "linked" / "c.png"]
    out = tmp_path / "out"
    assert predict.main(predict.parse_args(["--model", str(model_path), pattern, "--out", str(out)])) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == ["a_depth.npy", "b_depth.npy", "c_depth.npy"]
    assert capsys.readouterr().out.startswith("wrote depth for 3 of 3 images")


# The first bytes of an iPhone photo: a 24-byte 'ftyp' box of brand heic (ISO/IEC 23008-12), then the rest of the file.
HEIC_BYTES = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
HEIF_HINT = ("convert to JPEG first (heif-convert photo.heic photo.jpg, from libheif; sips -s format jpeg on macOS), "
             "or pip install pillow-heif, which is then used to read them")


@pytest.mark.skipif(filecheck.heif_readable(), reason="pillow-heif is installed: HEIC photos are read")
def test_heic_photos_are_named_with_how_to_convert_them(tmp_path, model_path, capsys):
    """In a folder, HEIC photos were silently left out; given by name, "cannot identify image file". Both name the
    files, say the format is not readable here and how to convert it (a HEIC named .jpg is known by its bytes)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(random_rgb((30, 40))).save(folder / "a.png")
    for name in ("IMG_0001.HEIC", "IMG_0002.heic"):
        (folder / name).write_bytes(HEIC_BYTES)
    out = tmp_path / "out"
    assert predict.main(predict.parse_args(["--model", str(model_path), str(folder), "--out", str(out)])) == 1
    captured = capsys.readouterr()
    assert (f"{folder}: skipped 2 HEIC / HEIF photos (IMG_0001.HEIC, IMG_0002.heic): this installation cannot read "
            f"them; {HEIF_HINT}") in captured.err.splitlines()
    assert captured.out.startswith("wrote depth for 1 of 1 images") and (out / "a_depth.npy").exists()

    (tmp_path / "misnamed.jpg").write_bytes(HEIC_BYTES)
    for path in (folder / "IMG_0001.HEIC", tmp_path / "misnamed.jpg"):
        assert predict.main(predict.parse_args(["--model", str(model_path), str(path), "--out", str(out)])) == 1
        assert (f"{path}: a HEIC / HEIF photo, which this installation cannot read; {HEIF_HINT}"
                in capsys.readouterr().err.splitlines())

    (folder / "a.png").unlink()
    assert predict.main(predict.parse_args(["--model", str(model_path), str(folder), "--out", str(out)])) == 2
    assert capsys.readouterr().err.splitlines()[-2:] == [
        f"{folder}: skipped 2 HEIC / HEIF photos (IMG_0001.HEIC, IMG_0002.heic): this installation cannot read them; "
        f"{HEIF_HINT}", f"error: no image file this installation can read matched {folder}"]
