"""The benchmark package: its baseline loads what the pipeline loads, its report says what its numbers say,
and its measures run on tiny sizes in-process.

Never a timing assertion: the numbers depend on the machine and its load. The whole `python -m benchmarks
--quick` takes about 3 minutes (training, spawned processes, a train.py run), too long for the suite, so
its measures are run here one by one, in-process, on tiny sizes (training's: the step it times is train.py's).
"""
import copy
import dataclasses
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import data
import synth
from augment import apply_colour
from benchmarks import __main__ as benchmarks_main, deployment, report, scale
from benchmarks.baseline import DenseDepthLoader
from benchmarks.common import (BASELINE_LOADER, MODEL_KINDS, SIZES, TFDATA, BatchClock, TrainConfig, check_paths,
                               command_line)
from benchmarks.inference import measure_inference
from benchmarks.pipeline import measure_pipeline, sink_model
from benchmarks.training import in_memory, real_pipeline, train_args, train_images_per_s, train_steps, warmup_loss
from conftest import ROOT
from depth import DepthScale, unpack_target
from layouts import DataError, open_source
from loss import depth_loss
from model import build_unet

# A 480x640 frame shrunk 5x to the input, the target half the input: sizes are not mixed up.
INPUT_HW, TARGET_HW = (96, 128), (48, 64)


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory) -> Path:
    """The folder of a synthetic NYU-format set: nyu_data.zip with 8 train frames (JPEG + 8-bit depth) and 4 test
    frames (PNG + 16-bit millimetres), Kinect holes included, and nyu_test.zip (rendering costs ~1 s a frame)."""
    out = tmp_path_factory.mktemp("synth")
    synth.write_synthetic(out, train=8, test=4, workers=1)
    return out


@pytest.fixture(scope="module")
def synthetic(synthetic_folder):
    """The synthetic set of synthetic_folder, opened."""
    return open_source(synthetic_folder / "nyu_data.zip")


def both_loaders(split):
    """Every frame of `split` in order, augmentation off, from make_dataset and from DenseDepthLoader:
    ((rgb, y_true) of make_dataset, (rgb, y_true) of the loader), numpy, frames along axis 0."""
    shapes = dict(batch_size=2, input_hw=INPUT_HW, target_hw=TARGET_HW, depth_scale=DepthScale())
    pipeline = [(rgb.numpy(), y.numpy()) for rgb, y in data.make_dataset(split, training=False, **shapes)]
    loader = DenseDepthLoader(split, **shapes, augmentation=None, shuffle=False)
    baseline = [loader[i] for i in range(len(loader))]
    return [tuple(np.concatenate(arrays) for arrays in zip(*batches)) for batches in (pipeline, baseline)]


@pytest.mark.parametrize("split_name", ["train", "test"])
def test_baseline_loader_yields_make_datasets_batches(synthetic, split_name):
    """Both loaders decode, resize and encode differently (PIL + scikit-image's antialiased bilinear against
    libjpeg's DCT scaling + TF's area average), so they agree within bounds, not exactly. Measured on this set:
    mean |rgb difference| 0.003 (swapped channels: 0.05, a flipped image: 0.12); mean relative difference of
    the encoded depth 0.0025 (flipped depth: 0.27; wrong units or encoding: > 1); the invalid pixels' overlap
    (intersection over union) 0.88-0.93 (an all-valid or inverted mask: 0)."""
    split = synthetic.split(split_name)
    (rgb, y_true), (base_rgb, base_y) = both_loaders(split)
    assert rgb.shape == base_rgb.shape == (len(split), *INPUT_HW, 3)
    assert y_true.shape == base_y.shape == (len(split), *TARGET_HW, 2)

    assert np.mean(np.abs(rgb - base_rgb)) < 0.01

    valid, base_valid = y_true[..., 1] > 0, base_y[..., 1] > 0
    both = valid & base_valid
    relative = np.abs(y_true[..., 0] - base_y[..., 0])[both] / y_true[..., 0][both]
    assert np.mean(relative) < 0.01

    holes, base_holes = ~valid, ~base_valid
    assert holes.sum() > 0, "the set has no invalid depth: the mask check below would be empty"
    assert (holes & base_holes).sum() / (holes | base_holes).sum() > 0.75


def test_keras_runs_the_baseline_loader_on_its_workers_in_order(synthetic):
    """The pipeline measure hands the loader to model.predict, as fit would: every batch arrives, in order."""
    split = synthetic.split("train")
    loader = DenseDepthLoader(split, batch_size=2, input_hw=INPUT_HW, target_hw=TARGET_HW, depth_scale=DepthScale(),
                              augmentation=None, shuffle=False, workers=2)
    means = sink_model(INPUT_HW).predict(loader, verbose=0)  # each image's mean colour [N, 3]
    expected = np.concatenate([loader[i][0].mean(axis=(1, 2)) for i in range(len(loader))])
    np.testing.assert_allclose(means, expected, atol=1e-5)


def test_batch_clock_leaves_out_the_warmup_batches():
    clock = BatchClock(warmup_batches=2)
    clock.on_predict_begin()
    for batch, seconds in enumerate([5.0, 6.0, 6.5, 7.0]):  # batch 1 ends at 6.0: timing starts there
        clock.marks.append((batch, seconds))
    assert clock.batches_per_s() == pytest.approx(2 / 1.0)
    # steps_per_execution 4: one mark per execution, at its last step; the first execution is the warm-up
    clock = BatchClock(warmup_batches=4)
    clock.on_train_begin()
    clock.marks.extend([(3, 10.0), (7, 12.0), (11, 14.0)])
    assert clock.batches_per_s() == pytest.approx(8 / 4.0)


# ---------------------------------------------------------------------------
# The report, on known results
# ---------------------------------------------------------------------------

def figure(median, low=None, high=None):
    low, high = median if low is None else low, median if high is None else high
    return {"median": median, "min": low, "max": high, "runs": [low, median, high], "unit": "x"}


def training_result(model: str, fastest: str) -> dict:
    """One model's training section: Keras defaults at 4 images/s, XLA at 2."""
    return {"model": model, "batch_size": 4, "fastest": fastest,
            "images_per_s": {"keras defaults": figure(4.0), "XLA": figure(2.0)},
            "speedup_vs_defaults": {"keras defaults": figure(1.0), "XLA": figure(0.5)}, "speedup": figure(1.0)}


def inference_result(model: str, fastest: str, fastest_ms: float) -> dict:
    """One model's inference section: the plain model.predict at 150 ms per photo, `fastest` at fastest_ms."""
    return {"model": model, "photo_hw": [480, 640], "fastest": fastest,
            "ms_per_image": {"model.predict @ batch 1": figure(150.0), fastest: figure(fastest_ms)},
            "speedup": figure(150.0 / fastest_ms), "fastest_images_per_s": figure(1000.0 / fastest_ms)}


@pytest.fixture
def results():
    """Hand-made results: the pipeline exactly at the 10x goal, memory and stall within theirs."""
    peaks = {"200 frames": figure(650.0), "2000 frames": figure(663.0)}
    memory = {loader: {"batches_read": batches, "epoch_peak_rss_mib": peaks, "growth": figure(1.02)}
              for loader, batches in ((TFDATA, "one epoch"), ("DenseDepth (zip in RAM)", 10))}
    return {
        "machine": {"cpu": "Test CPU", "usable_cores": 2, "memory_gib": 8.0, "gpus": [],
                    "tensorflow": "2.x", "keras": "3.x"},
        "settings": {"repeats": 3, "memory_frames": [200, 2000]},
        "pipeline": {
            "samples_per_s": {TFDATA: figure(500.0), BASELINE_LOADER: figure(50.0)},
            "speedup": figure(10.0, 9.0, 11.0),
            "profile": {
                "stages_ms_per_sample": {
                    BASELINE_LOADER: {"decode (PIL)": figure(6.0), "resize": figure(14.0)},
                    TFDATA: {"decode JPEG": figure(1.0), "decode depth": figure(0.5), "augment": figure(0.5)},
                },
                "total_ms_per_sample": {BASELINE_LOADER: 20.0, TFDATA: 2.0},
                "cores": 2,
                "ceiling_samples_per_s": {BASELINE_LOADER: 100.0, TFDATA: 1000.0},
                "measured_samples_per_s": {BASELINE_LOADER: 50.0, TFDATA: 500.0},
                "goal_ms_per_sample": 2.0,
                "reading_stage_samples_per_s": {"1 frame per call": figure(800.0), "8 frames per call": figure(3200.0)},
                "reading_stage_speedup": figure(4.0),
            },
        },
        "stall": {"model": "unet", "images_per_s": {"real pipeline": figure(3.92), "batch in memory": figure(4.0)},
                  "stall": figure(1.02)},
        "memory": memory,
        "training": {"unet": training_result("unet", "keras defaults"),
                     "transfer": training_result("densedepth_vgg16", "XLA")},
        "inference": {"unet": inference_result("unet", "predict.py @ batch 8", 60.0),
                      "transfer": inference_result("densedepth_vgg16", "model.predict @ batch 8", 80.0)},
        "limit": {"flops": {kind: {"flops_per_image": 2e10, "conv_flops_per_image": 1.9e10} for kind in MODEL_KINDS},
                  "peak": {"gflop_per_s": {"matmul 4096x4096": figure(480.0)}, "peak_gflop_per_s": 480.0}},
        "quality": {"test_images": 40, "steps_per_epoch": 75,
                    "baseline": {"delta1": 0.431, "abs_rel": 0.359},
                    "budgets": [{"minutes": 2.0, "epochs": 5, "delta1": 0.473, "abs_rel": 0.341}]},
        "duration_s": {"total": 600.0, "quality": 120.0},
    }


def test_headline_numbers_and_goal_verdicts(results):
    numbers = report.headline(results)
    assert numbers["pipeline_speedup"] == 10.0 and numbers["infer_speedup_unet"] == 2.5
    # training: 3 x 20 GFLOP x 4 images/s (the fastest configuration's) over 480 GFLOP/s
    assert numbers["peak_fraction_train"] == pytest.approx(0.5)
    # inference: 20 GFLOP x 1000/60 images/s over 480 GFLOP/s
    assert numbers["peak_fraction_infer"] == pytest.approx(2e10 * 1000 / 60 / 480e9)
    verdicts = report.goals(numbers)
    assert {key: goal["met"] for key, goal in verdicts.items()} == {
        "pipeline_speedup": True, "pipeline_stall": True, "pipeline_memory_growth": True}  # 10x is ">= 10"
    assert verdicts["pipeline_speedup"]["goal"] == ">= 10"
    missed = report.goals({**numbers, "pipeline_speedup": 9.99, "pipeline_stall": 1.06, "pipeline_memory_growth": 1.2})
    assert not any(goal["met"] for goal in missed.values())


def test_markdown_rows(results):
    results["pipeline"]["speedup"] = figure(7.2, 7.1, 7.3)
    results = {**results, **report.headline(results)}
    results["goals"] = report.goals(results)
    lines = report.markdown(results).splitlines()
    assert lines[0].startswith("Machine: Test CPU, 2 cores, 8.0 GiB RAM, no GPU; TensorFlow 2.x, Keras 3.x. "
                               "Median (min-max) of 3 runs")
    for row in [
        "| Input pipeline, samples/s (2 cores) | DenseDepth-style PyDataset 50.0 (50.0-50.0) | tf.data 500.0 "
        "(500.0-500.0) | 7.2 (7.1-7.3)x | >= 10 NOT met |",
        "| Training with the input pipeline (unet), images/s | batch in memory 4.00 (4.00-4.00) | real pipeline 3.92 "
        "(3.92-3.92) | 1.020 (1.020-1.020) (step-time ratio) | <= 1.05 met |",
        "| Peak RSS while reading (DenseDepth (zip in RAM)), MiB | 200 frames: 650 (650-650) | 2000 frames: 663 (663-663) "
        "| 1.020 (1.020-1.020) (growth) | reads 10 batches: its peak is the zip it holds |",
        "| Where a sample's CPU time goes, ms on one core | decode (PIL) 6.00 + resize 14.00 = **20.00** | decode JPEG "
        "1.00 + decode depth 0.50 + augment 0.50 = **2.00** | 10.0x less CPU | 10x needs <= 2.00 ms per sample; the "
        "two decodes alone take 1.50 |",
        "| Samples/s if 2 cores did only this, vs measured | 100 vs 50 | 1000 vs 500 |  | measured / ceiling 50% and "
        "50%: both are bound by their stages' CPU time, not by threads or waiting |",
        "| Training densedepth_vgg16, images/s (batch 4) | Keras defaults 4.00 (4.00-4.00) | fastest: XLA 2.00 "
        "(2.00-2.00) | 1.00 (1.00-1.00)x | all tried: XLA 0.50 (0.50-0.50)x |",
        "| Inference unet, ms per 640x480 photo | model.predict @ batch 1 150.0 (150.0-150.0) | fastest: predict.py @ "
        "batch 8 60.0 (60.0-60.0) | 2.50 (2.50-2.50)x | others:  |",
        "| Fraction of peak, UNet training |  | 0.50 |  | a step counted as 3x the forward FLOPs; fastest configuration |",
        "| Quality after 2 min of CPU training, delta1 / abs_rel | mean depth everywhere 0.431 / 0.359 | UNet (demo "
        "recipe) 0.473 / 0.341 |  | 5 epochs of 75 steps; 40 test images |",
    ]:
        assert row in lines
    assert lines[-1] == "Run time 10.0 min, of which 2.0 min for the quality runs."


def test_markdown_without_quality_runs(results):
    del results["quality"], results["duration_s"]["quality"]
    results = {**results, **report.headline(results)}
    results["goals"] = report.goals(results)
    table = report.markdown(results)
    assert "Quality after" not in table and table.endswith("\nRun time 10.0 min.")


def test_report_reproduces_the_readme_table_from_its_results():
    """benchmarks/results.json is the run behind the README's table: its numbers, goals and Markdown come
    back unchanged from the report's functions."""
    saved = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    results = copy.deepcopy(saved)
    results["quality"].setdefault("steps_per_epoch", 75)  # that run predates the key: the recipe's 75 steps
    numbers = report.headline(results)
    assert numbers == pytest.approx({key: saved[key] for key in numbers}, rel=1e-12)
    assert report.goals(results) == saved["goals"]
    assert report.markdown(results) == saved["markdown"]


# ---------------------------------------------------------------------------
# The measures, on tiny sizes (python -m benchmarks --quick runs them all, in about 3 minutes)
# ---------------------------------------------------------------------------

TINY = dataclasses.replace(SIZES["quick"], repeats=1, input_hw=(32, 48), batch_size=2, pipeline_batches=2,
                           pipeline_warmup_batches=1, infer_hw=(48, 64), infer_images=2, infer_batches=(1, 2))


def test_pipeline_measure_runs_both_loaders_through_keras(synthetic):
    pipeline = measure_pipeline(synthetic.split("train"), TINY, DepthScale())
    assert set(pipeline["samples_per_s"]) == {TFDATA, BASELINE_LOADER}
    assert pipeline["samples_per_run"] == TINY.pipeline_batches * TINY.batch_size


def test_the_training_measure_times_train_py_step(synthetic):
    """benchmarks.training times loop.StepFunctions.train, the step train.py runs: the loss of its first step is the
    DenseDepth loss (loss.depth_loss) of that batch under the weights before the step, and a timed run trains one
    warm-up call, then whole calls of steps_per_call steps covering the timed steps, from train.py's own input
    pipeline; the optimizer counts every one."""
    scale = DepthScale()
    args = train_args("unet", TINY, TrainConfig("steps_per_execution=2", steps_per_execution=2))
    args.base_filters = 4  # the smallest UNet: what is tested is the step, not the model
    keras.utils.set_random_seed(0)
    steps = train_steps(args, scale)
    real = real_pipeline(steps, args, synthetic.split("train"), scale)
    rgb, y_true, colour = next(iter(real))  # uint8 RGB and each frame's colour change, which the step applies
    assert rgb.dtype == "uint8" and colour.shape == (TINY.batch_size, 6)
    before = steps.net.get_weights()
    x = apply_colour(rgb, colour)
    target, mask = unpack_target(y_true)
    expected = float(depth_loss(target, steps.net(x, training=True), mask, theta=args.theta,
                                max_val=scale.value_range[1]))
    assert warmup_loss(steps, in_memory(steps, (rgb, y_true, colour)), n_steps=1, steps_per_call=1) == pytest.approx(
        expected, rel=1e-5)
    assert int(steps.optimizer.iterations) == 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, steps.net.get_weights()))  # the step trained
    train_images_per_s(steps, real, timed_steps=3, steps_per_call=args.steps_per_execution, batch_size=TINY.batch_size)
    assert int(steps.optimizer.iterations) == 1 + 2 + 4  # a warm-up call of 2 steps, then 2 calls of 2 to cover 3


def test_inference_paths_agree_with_their_reference():
    """model.predict (plain and XLA) and predict.py at batch 1 and 2 give the same depth maps as their
    family's batch-1 run, so each counts as correct and the fastest is one of them."""
    keras.utils.set_random_seed(0)
    net = build_unet(TINY.input_hw, base_filters=4, depth_scale=DepthScale("metres"))
    kernel, bias = net.get_layer("output_conv").get_weights()
    net.get_layer("output_conv").set_weights([kernel, bias + 3.0])  # metres inside the range, not at a clip limit
    photos = np.random.default_rng(0).integers(0, 256, (TINY.infer_images, *TINY.infer_hw, 3), dtype=np.uint8)
    inference = measure_inference(net, photos, TINY, DepthScale("metres"))
    assert all(inference["correct"].values()), inference["max_abs_diff_m"]
    assert inference["fastest"] in inference["ms_per_image"]
    assert inference["photo_hw"] == list(TINY.infer_hw) and inference["input_hw"] == list(TINY.input_hw)


def test_paths_that_cannot_be_used_stop_before_any_measuring(tmp_path, capsys):
    """check_paths refuses a --json or --work folder that cannot be created and a --quality-data that does not
    exist; on each benchmark's command line (python -m benchmarks, benchmarks.deployment and benchmarks.scale:
    command_line, which their __main__ blocks call) that is one sentence and exit code 2, before anything is made."""
    parse_args, deployment_args = benchmarks_main.parse_args, deployment.parse_args
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(DataError, match=r"^--json: cannot create .*a_file \(File exists\); choose another"):
        check_paths(parse_args(["--json", str(tmp_path / "a_file" / "results.json"), "--cache", str(tmp_path / "c"),
                                "--work", str(tmp_path / "w")]))
    with pytest.raises(DataError, match="missing does not exist"):
        check_paths(parse_args(["--json", str(tmp_path / "r.json"), "--cache", str(tmp_path / "c"),
                                "--work", str(tmp_path / "w"), "--quality-data", str(tmp_path / "missing")]))
    with pytest.raises(DataError, match=r"^--work: cannot create .*a_file"):  # the deployment benchmark's too
        check_paths(deployment_args(["--json", str(tmp_path / "d.json"), "--cache", str(tmp_path / "c"),
                                     "--work", str(tmp_path / "a_file" / "w")]))
    for module in (benchmarks_main, deployment, scale):
        argv = ["--quick", "--json", str(tmp_path / "a_file" / "r.json"), "--cache", str(tmp_path / "cache"),
                "--work", str(tmp_path / "work")]
        assert command_line(module.main, module.parse_args, argv) == 2, module.__name__
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"error: --json: cannot create {tmp_path / 'a_file'}"), (module.__name__, err)
        assert not (tmp_path / "cache").exists() and not (tmp_path / "work").exists(), module.__name__


def test_the_scale_report_of_the_saved_full_run_comes_back_unchanged():
    """benchmarks/scale.json is docs/scale.md's full run (both sizes resumed and evaluated): its Markdown table
    comes back unchanged from scale.markdown with the full run's sizes, and its resume ratio (epoch 15 over epoch 1,
    run by run, at 50,000 frames) from its resume times."""
    saved = json.loads((ROOT / "benchmarks" / "scale.json").read_text())
    assert saved["command"] == "python -m benchmarks.scale --repeats 3"
    results = {key: {int(frames): value for frames, value in saved[key].items()}
               for key in ("zip_mib", "pipeline", "resume_s", "evaluate_s")}
    results.update({key: saved[key] for key in ("resume_ratio_epoch15_vs_epoch1", "first_batch_growth_50k_vs_2k",
                                                "memory_growth_50k_vs_2k")})
    table = scale.markdown(results, scale.SCALE_SIZES["full"])
    assert table == saved["markdown"]
    assert "| train.py --resume to the first step, from epoch 15, s | 9.5 (8.8-12.3) | 10.6 (9.9-11.1) | 1.12 |" in table
    times = {(50000, int(epoch.split()[1])): figure["runs"] for epoch, figure in saved["resume_s"]["50000"].items()}
    assert scale.resume_ratio(times, 50000, scale.SCALE_SIZES["full"].resume_epochs) == \
        saved["resume_ratio_epoch15_vs_epoch1"]


def test_the_quick_scale_benchmark_writes_real_nyu_zips_runs_every_measure_and_leaves_no_zip(synthetic_folder, tmp_path):
    """python -m benchmarks.scale --quick (20 and 50 frames), every code path once: the sets it writes are
    DenseDepth's layout with every frame under its own name; its JSON holds the pipeline figures at both sizes (both
    probed in one spawned process) and the resume (from epoch 15, one train.py --resume) and evaluate.py figures at 50
    frames (the table says the others were not measured), all positive, with the issue's three ratios at the top
    level: the two growths measured, the resume ratio (two positions) not; the zips and runs are deleted after.
    The full run's (every position and ratio): test_the_scale_report_of_the_saved_full_run_comes_back_unchanged."""
    written = scale.write_nyu_zip(synthetic_folder / "nyu_data.zip", tmp_path / "nyu_data.zip", 1003, 5)
    splits = open_source(written).splits
    assert len(splits["train"]) == 1003 and len(splits["test"]) == 5 and len(set(splits["train"].keys)) == 1003
    assert splits["train"].keys[1002] == ("data/nyu2_train/scale_0001_out/2.jpg", "data/nyu2_train/scale_0001_out/2.png")

    # the benchmark's cached source set (--cache's synth8, written on first use) is this module's: none rendered
    assert scale.SCALE_SIZES["quick"].source_frames == 8
    shutil.copytree(synthetic_folder, tmp_path / "cache" / "synth8")

    results = scale.main(scale.parse_args(["--quick", "--json", str(tmp_path / "scale.json"), "--cache",
                                           str(tmp_path / "cache"), "--work", str(tmp_path / "work")]))
    saved = json.loads((tmp_path / "scale.json").read_text())
    assert saved["command"] == "python -m benchmarks.scale --quick" and "| Figure | 20 frames | 50 frames |" in saved["markdown"]
    for key in ("first_batch_growth_50k_vs_2k", "memory_growth_50k_vs_2k"):
        assert saved[key]["median"] > 0 and saved[key]["unit"] == "ratio"
    assert saved["resume_ratio_epoch15_vs_epoch1"] is None and "- `resume_ratio_epoch15_vs_epoch1`: not measured" in \
        saved["markdown"].splitlines()
    for frames in ("20", "50"):
        assert {k: v["median"] > 0 for k, v in saved["pipeline"][frames].items() if k != "open_s"} == {
            "first_batch_s": True, "samples_per_s": True, "peak_rss_mib": True, "tensorflow_rss_mib": True}
        assert saved["zip_mib"][frames] > 0
    # one process probed both: the 50-frame probe began at the peak the 20-frame one left (ru_maxrss never falls)
    assert saved["pipeline"]["50"]["tensorflow_rss_mib"]["median"] >= saved["pipeline"]["20"]["peak_rss_mib"]["median"]
    assert set(saved["resume_s"]) == set(saved["evaluate_s"]) == {"50"}
    assert {k: v["median"] > 0 for k, v in saved["resume_s"]["50"].items()} == {"epoch 15": True}
    assert saved["evaluate_s"]["50"]["median"] > 0
    assert "| evaluate.py over 4 test frames, s | not measured | " in saved["markdown"]
    assert "| train.py --resume to the first step, from epoch 15, s | not measured | " in saved["markdown"]
    assert "from epoch 1," not in saved["markdown"]
    assert results["first_batch_growth_50k_vs_2k"] == saved["first_batch_growth_50k_vs_2k"]
    assert not (tmp_path / "work" / "scale").exists()
