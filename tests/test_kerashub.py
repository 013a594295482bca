"""kerashub.py: tiny KerasHub presets (a 2-layer DINOv2 of width 16, as keras-hub's own tests build them), saved with
save_to_preset into a temporary folder and read back through from_preset as a user's preset is: Depth Anything and a
DINOv2-encoder transfer model train, resume, save and reload, evaluate, predict and export; evaluate.py's
--align scale-shift against a hand-computed least-squares answer. Nothing is downloaded."""
import json

import keras
import numpy as np
import pytest
from PIL import Image

import evaluate
import export
import model as models
import nyu_layouts as L
import predict
import train as train_py
from conftest import built_once
from depth import DepthScale

keras_hub = pytest.importorskip("keras_hub")
import kerashub  # noqa: E402  after the skip: it needs keras_hub to build anything

PRESET_HW = (126, 126)  # the tiny presets' own input (a 9x9 patch grid)
DA_HW = (98, 98)  # the Depth Anything runs': another size, so the position embeddings are interpolated
ENCODER_HW = (70, 70)  # the DINOv2-encoder transfer model's (1/32 .. 1/4: 3, 5, 9, 18)
FLOAT_TOLERANCE_M = 1e-3  # the bound for float32 exports against the Keras model
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet's, as DINOv2's converter


def save_converter(cls, folder):
    """An ImageNet-normalising image converter of class cls saved into the preset folder (as published presets hold)."""
    cls(image_size=PRESET_HW, scale=list(1 / (255 * STD)), offset=list(-MEAN / STD)).save_to_preset(str(folder))


def write_presets(root):
    """root/depth_anything, root/dinov2 and root/densenet: tiny random presets in save_to_preset's layout, and
    root/nyu_data.zip (6 train, 2 test frames of 48x64)."""
    keras.utils.set_random_seed(0)
    dinov2 = keras_hub.models.DINOV2Backbone(patch_size=14, num_layers=2, hidden_dim=16, num_heads=2,
                                             intermediate_dim=32, image_shape=(*PRESET_HW, 3),
                                             position_embedding_shape=(*PRESET_HW, 3), name="dinov2")
    dinov2.save_to_preset(str(root / "dinov2"))
    save_converter(keras_hub.layers.DINOV2ImageConverter, root / "dinov2")
    depth_anything = keras_hub.models.DepthAnythingBackbone(
        image_encoder=dinov2, reassemble_factors=[2, 0.5], neck_hidden_dims=[8, 16], fusion_hidden_dim=16,
        head_hidden_dim=8, head_in_index=-1, feature_keys=["stage1", "stage2"])
    depth_anything.save_to_preset(str(root / "depth_anything"))
    save_converter(keras_hub.layers.DepthAnythingImageConverter, root / "depth_anything")
    densenet = keras_hub.models.DenseNetBackbone(stackwise_num_repeats=[1, 1, 1, 1], growth_rate=4)
    densenet.save_to_preset(str(root / "densenet"))
    save_converter(keras_hub.layers.DenseNetImageConverter, root / "densenet")
    L.write_zip(root / "nyu_data.zip", L.densedepth_files(L.make_frames(6, seed=1), L.make_frames(2, seed=2)))


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    return built_once(tmp_path_factory, "kerashub_presets", write_presets)


def run_flags(presets, kind):
    if kind == "depth-anything":
        return ["--model", "depth-anything", "--preset", str(presets / "depth_anything"), "--input-size", *map(str, DA_HW)]
    return ["--model", "transfer", "--encoder", f"kerashub:{presets / 'dinov2'}", "--input-size", *map(str, ENCODER_HW)]


def train_run(presets, kind, out, *more):
    flags = [*run_flags(presets, kind), "--data", str(presets / "nyu_data.zip"), "--out", str(out), "--bs", "2",
             "--steps-per-epoch", "2", "--val-steps", "1", "--tb-images", "1", "--lr", "1e-3", *more]
    assert train_py.run(flags) == 0


def trained_run(tmp_path_factory, presets, kind):
    """A run of `kind` trained for one epoch of two steps, resumed for a second, exported to LiteRT and ONNX."""
    def build(run):
        train_run(presets, kind, run, "--epochs", "1")
        train_run(presets, kind, run, "--epochs", "2", "--resume", "--tb-images", "0")  # the first run logged them
        for fmt, name in (("tflite", "model.tflite"), ("onnx", "model.onnx")):
            assert export.main(export.parse_args(["--model", str(run / "model.keras"), "--format", fmt])) == 0
            assert (run / name).is_file()
    return built_once(tmp_path_factory, f"kerashub_run_{kind}", build)


@pytest.mark.parametrize("kind", ["depth-anything", "transfer"])
def test_trains_resumes_reloads_evaluates_predicts_and_exports(kind, presets, tmp_path_factory, tmp_path, capsys):
    run = trained_run(tmp_path_factory, presets, kind)
    with open(run / "history.csv") as f:  # the second epoch trained after --resume
        assert [line.split(",")[0] for line in f.read().split()[1:]] == ["0", "1"]
    assert json.loads((run / "args.json").read_text())["model"] == kind
    net = models.load_model(run / "model.keras")  # imports keras_hub for its layers
    hw = DA_HW if kind == "depth-anything" else ENCODER_HW
    assert net.input_shape == (None, *hw, 3)
    # Depth Anything predicts at full size; the transfer decoder climbs DINOv2's reassembled 1/32 .. 1/4 maps.
    assert net.output_shape == ((None, *hw, 1) if kind == "depth-anything" else (None, 18, 18, 1))
    assert models.depth_scale_of(net) == DepthScale() and not models.is_relative(net)
    last = models.load_model(run / "checkpoints" / "last.keras")
    rgb = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    keras_depth = predict.predict_depth_m(net, rgb)
    np.testing.assert_array_equal(keras_depth, predict.predict_depth_m(last, rgb))
    assert np.isfinite(keras_depth).all() and keras_depth.std() > 0
    for name in ("model.tflite", "model.onnx"):
        exported, _ = evaluate.load_depth_model(run / name)
        np.testing.assert_allclose(predict.predict_depth_m(exported, rgb), keras_depth, atol=FLOAT_TOLERANCE_M,
                                   err_msg=name)
    paths = [str(run / name) for name in ("model.keras", "model.tflite", "model.onnx")]
    data = str(presets / "nyu_data.zip")
    args = evaluate.parse_args([a for p in paths for a in ("--model", p)] + ["--data", data, "--out", str(tmp_path),
                                                                           "--align", "scale-shift"])
    assert evaluate.main(args) == 0
    table = (tmp_path / "table.md").read_text()
    for path in paths:
        assert f"| {path}, per-image scale and shift in inverse depth (least squares) | {data} [test], 2 images |" in table
    photo = tmp_path / "photo.png"
    Image.fromarray(rgb[0]).save(photo)
    assert predict.main(predict.parse_args(["--model", paths[0], str(photo), "--out", str(tmp_path / "p")])) == 0
    np.testing.assert_allclose(np.load(tmp_path / "p" / "photo_depth.npy"), keras_depth[0], atol=1e-5)
    assert "relative" not in capsys.readouterr().err


def perturbed(net, seed=0):
    """net with every weight moved by noise, as training moves them; the DINOv2 position embeddings in use all
    upwards, a change KerasHub 0.32 does not save (it tests the signed sum of the differences: kerashub.py fixes it)."""
    rng = np.random.default_rng(seed)
    for v in net.weights:
        noise = 0.05 * rng.standard_normal(v.shape).astype("float32")
        v.assign(v.numpy() + (np.abs(noise) if v.name == "interpolated_position_embeddings" else noise))
    return net


@pytest.mark.parametrize("kind", ["depth-anything", "transfer"])
def test_trained_weights_come_back_exactly_from_the_keras_file(kind, presets, tmp_path):
    """Built at another size than the preset's, the position embeddings are stored at the model's own grid, so a
    trained model saves and loads without KerasHub resampling them: the same predictions, bit for bit."""
    if kind == "depth-anything":
        net = models.build_model(kind, preset=str(presets / "depth_anything"), input_hw=DA_HW, encoder_weights="preset")
    else:
        net = models.build_model(kind, encoder=f"kerashub:{presets / 'dinov2'}", input_hw=ENCODER_HW,
                                 encoder_weights="preset")
    x = np.random.default_rng(1).random((2, *net.input_shape[1:3], 3), dtype=np.float32)
    before = np.asarray(perturbed(net)(x))
    net.save(tmp_path / "model.keras")
    np.testing.assert_array_equal(np.asarray(models.load_model(tmp_path / "model.keras")(x)), before)


def test_preset_weights_are_the_presets_and_none_leaves_them_random(presets):
    """The preset's weights reach the model (the DINOv2's patch embedding, whose shape no input size changes), and
    its image converter is the model's first layer; --encoder-weights none builds from the config alone."""
    preset = keras_hub.models.Backbone.from_preset(str(presets / "dinov2"))
    kernel = next(v for v in preset.weights if v.path.endswith("patch_embeddings/projection/kernel")).numpy()
    for weights, same in (("preset", True), ("none", False)):
        net = models.build_model("transfer", encoder=f"kerashub:{presets / 'dinov2'}", input_hw=ENCODER_HW,
                                 encoder_weights=weights)
        found = next(v for v in net.weights if v.path.endswith("patch_embeddings/projection/kernel")).numpy()
        assert np.array_equal(found, kernel) is same
    rescale = net.get_layer("preprocess_image_converter")
    np.testing.assert_allclose(rescale(np.ones((1, 1, 1, 3), "float32")).numpy().ravel(), (1 - MEAN) / STD, rtol=1e-5)


def test_a_cnn_backbone_is_tapped_by_key_with_widths_from_its_features(presets):
    """KerasHub's DenseNet gives P2..P5: conv2 starts from P5 at half its channels, three up blocks climb to P2 (1/4)."""
    net = models.build_model("transfer", encoder=f"kerashub:{presets / 'densenet'}", input_hw=(64, 64),
                             encoder_weights="preset", decoder_width=0.5)
    backbone = keras_hub.models.Backbone.from_preset(str(presets / "densenet"))
    p5 = backbone.pyramid_outputs["P5"].shape[-1]
    assert net.get_layer("conv2").filters == round(p5 * 0.5)
    assert [net.get_layer(f"up{i}_convB").filters for i in (1, 2, 3)] == [round(p5 * 0.5) // 2**i for i in (1, 2, 3)]
    assert net.output_shape == (None, 16, 16, 1)
    assert "up4_convB" not in [layer.name for layer in net.layers]


def test_relative_model_spans_the_range_and_predict_says_so(presets, tmp_path, capsys):
    out = tmp_path / "relative.keras"
    assert kerashub.main(kerashub.parse_args(["relative", str(presets / "depth_anything"), "--input-size", "98", "98",
                                              "--out", str(out)])) == 0
    net = models.load_model(out)
    assert models.is_relative(net)
    y = np.asarray(net(np.random.default_rng(2).random((2, *DA_HW, 3), dtype=np.float32)))
    np.testing.assert_allclose(y.min(axis=(1, 2, 3)), [1.0, 1.0], rtol=1e-5)  # each image onto [1, 100]: 10-0.1 m
    np.testing.assert_allclose(y.max(axis=(1, 2, 3)), [100.0, 100.0], rtol=1e-5)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(photo)
    assert predict.main(predict.parse_args(["--model", str(out), str(photo), "--out", str(tmp_path / "p")])) == 0
    assert (f"note: {out} predicts relative depth (up to an unknown scale and shift), not metres"
            in capsys.readouterr().err)


def test_scale_shift_alignment_is_least_squares_in_inverse_depth():
    """Hand-computed: inverse predictions 1, 2, 4 against inverse truths 2, 3, 6 (the fourth pixel invalid):
    s = cov / var = (19/9) / (14/9) = 19/14, t = mean(gt) - s * mean(pred) = 11/3 - 19/14 * 7/3 = 1/2, so the aligned
    inverse depths are 13/7, 45/14, 83/14 (the invalid pixel, predicted like the second, aligned like it too)."""
    gt = np.array([[1 / 2, 1 / 3, 1 / 6, 9.0]])
    pred = np.array([[1.0, 1 / 2, 1 / 4, 1 / 2]])
    valid = np.array([[True, True, True, False]])
    aligned = evaluate.scale_shift_aligned(gt, pred, valid, DepthScale("inverse", 0.1, 10.0))
    np.testing.assert_allclose(aligned, [[7 / 13, 14 / 45, 14 / 83, 14 / 45]], rtol=1e-6)
    # An exact affine relation in inverse depth is undone exactly; what falls behind the far limit is clipped there.
    truth = np.array([[0.5, 1.0, 2.0, 4.0]])
    np.testing.assert_allclose(evaluate.scale_shift_aligned(truth, 1 / (3 / truth + 0.5), np.ones((1, 4), bool),
                                                            DepthScale()), truth, rtol=1e-6)
    # Inverse truths 0.5, 3, 5.5: s = 45/28, t = -3/4, so an invalid pixel predicted at inverse depth 0.3 aligns to a
    # negative inverse depth, past the far limit.
    far = evaluate.scale_shift_aligned(1 / np.array([[0.5, 3, 5.5, 1]]), 1 / np.array([[1, 2, 4, 0.3]]), valid,
                                       DepthScale("inverse", 0.1, 10.0))
    np.testing.assert_allclose(far, [[1 / (45 / 28 - 0.75), 1 / (90 / 28 - 0.75), 1 / (180 / 28 - 0.75), 10.0]],
                               rtol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--model", "depth-anything", "--input-size", "100", "100"],
     "error: --model depth-anything (DINOv2, 14-pixel patches) needs a square input whose side is a multiple of 14, "
     "e.g. --input-size 98 98 (Depth Anything V2 trains at 518 518); got 100x100"),
    (["--model", "transfer", "--encoder", "kerashub:{root}/densenet", "--encoder-weights", "imagenet.h5"],
     "error: a KerasHub model's --encoder-weights is 'preset' (its own) or 'none', not 'imagenet.h5'; a local preset "
     "folder goes in the preset itself"),
    (["--model", "depth-anything", "--preset", "{root}/densenet", "--input-size", "98", "98"],
     "error: preset '{root}/densenet' is a DenseNetBackbone, not a DepthAnythingBackbone"),
    (["--model", "depth-anything", "--preset", "{root}/missing", "--input-size", "98", "98"],
     "error: could not load the KerasHub preset '{root}/missing' (Unknown preset identifier."),
])
def test_bad_kerashub_input_is_one_sentence(presets, tmp_path, capsys, flags, message):
    preset_flags = ["--preset", str(presets / "depth_anything")] if "--preset" not in flags else []
    flags = [f.replace("{root}", str(presets)) for f in flags]
    code = train_py.run([*flags, *preset_flags, "--data", str(presets / "nyu_data.zip"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(message.replace("{root}", str(presets))), err
    assert not (tmp_path / "r").exists()


def test_a_preset_name_offline_is_one_sentence_naming_the_cache_folder(presets, tmp_path, capsys, monkeypatch):
    """KerasHub's download replaced by the error it raises without a network (requests' ConnectionError, an
    OSError): the run stops with one sentence naming the preset and kagglehub's folder to fill."""
    def offline(*args, **kwargs):
        raise OSError("HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    code = train_py.run(["--model", "depth-anything", "--input-size", "98", "98", "--data",
                         str(presets / "nyu_data.zip"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    folder = tmp_path / "kagglehub" / "models" / "keras" / "depth-anything" / "keras" / "depth_anything_v2_small" / "1"
    assert code == 2 and err == (
        "error: could not load the KerasHub preset 'depth_anything_v2_small' (HTTPSConnectionPool(host='api.kaggle.com',"
        f" port=443): Max retries exceeded); offline, put its files (config.json, model.weights.h5, image_converter.json)"
        f" in {folder}; or pass a local preset folder written by save_to_preset (--encoder-weights none skips the "
        "weights but still needs its config.json)"), err
