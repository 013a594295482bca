"""python -m benchmarks.flicker: what --temporal-smoothing buys on a real sequence with sensor depth.

    python -m benchmarks.flicker --model runs/demo/model.keras --frames ../shared/real_captures/sevenscenes_redkitchen

The frames (X_rgb.* with X_depth.png in millimetres, in file-name order: one walk through a scene) become a
video in --work (H.264, at --fps), which video.predict_video turns into depth once, unsmoothed, every frame's
depth kept (.npy). Each smoothing weight is then applied to those depths with video.TemporalSmoothing, the
function predict.py's --temporal-smoothing runs, and scored against the sensor: the mean frame-to-frame change
(the mean over consecutive pairs of |d_t - d_(t-1)| in metres, over the pixels where the sensor measured both
frames) of the prediction beside the sensor's own, and abs_rel (evaluate.py's: loss.depth_errors over the
sensor's pixels). Prints a Markdown table and writes it with the numbers as JSON in --work.
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

import nyu
import video
from backends import load_depth_model
from loss import depth_errors

SENSOR = nyu.DEPTH_CODECS["png16_mm"]  # ../shared/real_captures/README.md: every depth PNG in millimetres
DEFAULT_ALPHAS = (0.0, 0.3, 0.5, 0.7, 0.9)
DEFAULT_FPS = "30/7"  # 7-Scenes' redkitchen there: every 7th frame of a 30 fps sequence


def sequence_pairs(folder) -> list[tuple[Path, Path]]:
    """(RGB, depth PNG) paths of the frames in `folder`, in file-name order; ValueError when there are none."""
    pairs = [(rgb, rgb.with_name(rgb.name.split("_rgb.")[0] + "_depth.png"))
             for rgb in sorted(Path(folder).glob("*_rgb.*"))]
    pairs = [(rgb, depth) for rgb, depth in pairs if depth.is_file()]
    if not pairs:
        raise ValueError(f"{folder} holds no X_rgb.* with an X_depth.png beside it")
    return pairs


def write_sequence_video(pairs, path, fps: Fraction) -> Path:
    """The photographs of `pairs` as an H.264 video at fps (video.OUTPUT_CODEC, CRF 18, as predict.py writes)."""
    first = np.asarray(Image.open(pairs[0][0]).convert("RGB"))
    writer = video.DepthVideo(path, fps, first.shape[:2], comment="benchmarks.flicker's sequence")
    try:
        for rgb_path, _ in pairs:
            writer.write(np.asarray(Image.open(rgb_path).convert("RGB")))
    finally:
        writer.close()
    return Path(path)


def mean_frame_change(depths, sensor_depths) -> float:
    """Mean over consecutive pairs of frames of the mean |d_t - d_(t-1)| in metres over the pixels where the
    sensor measured both frames (sensor depth > 0). depths, sensor_depths: sequences of [H, W] metres."""
    changes = []
    for t in range(1, len(depths)):
        both = (sensor_depths[t] > 0) & (sensor_depths[t - 1] > 0)
        changes.append(float(np.abs(depths[t] - depths[t - 1])[both].mean()))
    return float(np.mean(changes))


def score_smoothing(raw_depths, sensor_depths, alpha: float) -> dict:
    """{"alpha", "frame_change_m", "abs_rel"} of the raw depths [T, H, W] metres smoothed with weight alpha."""
    smooth = video.TemporalSmoothing(alpha)
    depths = [smooth(depth).copy() for depth in raw_depths]
    abs_rel = float(depth_errors(np.stack(sensor_depths), np.stack(depths))["abs_rel"])
    return {"alpha": alpha, "frame_change_m": mean_frame_change(depths, sensor_depths), "abs_rel": abs_rel}


def markdown(rows, sensor_change_m: float) -> str:
    lines = ["| --temporal-smoothing | mean frame-to-frame change (m) | ratio to the sensor's | abs_rel |",
             "| --- | --- | --- | --- |",
             f"| sensor depth | {sensor_change_m:.3f} | 1.00 | |"]
    for row in rows:
        lines.append(f"| {row['alpha']:g}{' (off)' if row['alpha'] == 0 else ''} | {row['frame_change_m']:.3f} | "
                     f"{row['frame_change_m'] / sensor_change_m:.2f} | {row['abs_rel']:.3f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="any model predict.py takes")
    parser.add_argument("--frames", required=True, help="a folder of X_rgb.* + X_depth.png (millimetres), in order")
    parser.add_argument("--fps", default=DEFAULT_FPS, help=f"the sequence's frame rate (default {DEFAULT_FPS})")
    parser.add_argument("--alphas", type=float, nargs="+", default=list(DEFAULT_ALPHAS),
                        help="smoothing weights to score (default: %(default)s)")
    parser.add_argument("--work", default="/tmp/flicker", help="where the video and results go (default /tmp/flicker)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    try:
        model, depth_scale = load_depth_model(args.model)
        pairs = sequence_pairs(args.frames)
        for alpha in args.alphas:
            video.TemporalSmoothing(alpha)  # refuses a weight outside [0, 1) before any work
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clip = write_sequence_video(pairs, work / "sequence.mp4", Fraction(args.fps))
    result = video.predict_video(model, depth_scale, clip, work, "sequence", batch_size=4, flip=True,
                                 depth_only=False, frame_depth="npy", smoothing=0.0, png_codec="png16_mm")
    raw = np.load(work / "sequence_depth.npy", mmap_mode="r")
    sensor = [SENSOR.to_metres(np.asarray(Image.open(depth_path))) for _, depth_path in pairs]
    rows = [score_smoothing(raw, sensor, alpha) for alpha in args.alphas]
    sensor_change = mean_frame_change(sensor, sensor)
    table = markdown(rows, sensor_change)
    report = {"model": args.model, "frames": args.frames, "count": result.frames, "fps": args.fps,
              "sensor_frame_change_m": sensor_change, "rows": rows, "table": table}
    (work / "flicker.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{result.frames} frames of {args.frames} at {args.fps} fps, model {args.model}:\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
