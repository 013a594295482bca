"""Depth for videos: predict.py's depth of every frame of a clip, streamed, as a depth video at the clip's rate.

    python predict.py --model runs/unet/model.keras walk.mp4 --out outputs/predict [--frame-depth png|npy]

For each input video X (VIDEO_SUFFIXES, read through PyAV, whose wheels bring FFmpeg) `predict_video` writes
X_depth.mp4 (H.264, the clip's frame rate and frame count): the photo, its colour-mapped depth and a colour bar
in metres side by side, or the colour map alone (depth_only). The colours span one range for the whole clip
(`clip_depth_range`: the 1st to 99th percentile of the depth of RANGE_SAMPLES frames spread evenly over it),
so a colour means the same depth in every frame. Optionally every frame's depth in metres: 16-bit PNGs in
X_depth_frames/ (predict.py's writer, unit and text chunk) or one float32 X_depth.npy [frames, H, W] written
through a memory map. Frames are decoded, predicted and written a batch at a time, so memory stays flat in the
clip's length. `TemporalSmoothing` is the optional exponential average over frames (--temporal-smoothing).

A damaged clip: the first frame the decoder fails on stops the clip, and a clip shorter than its header says
is named with the first missing frame; either way what was written before is kept (a playable video) and the
clip counts as a failed input (predict.py exits 1).
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

import figures
from predict import predict_depth_m, save_depth_png16

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
RANGE_SAMPLES = 16  # frames predicted, spread evenly over the clip, to fix its colour range
RANGE_PERCENTILES = (1.0, 99.0)  # of their depths: a few stray pixels do not stretch the scale
OUTPUT_CODEC, OUTPUT_CRF = "libx264", "18"  # H.264 plays in every browser and player; CRF 18 looks lossless
COLORBAR_TICKS = 5


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoError(ValueError):
    """A file that is not a readable video (no video stream, not a container FFmpeg knows, no frame rate)."""


@dataclasses.dataclass(frozen=True)
class ClipScan:
    """What a first pass over a clip found: fps (frames per second, exact), hw = (H, W) pixels, frames = how many
    frames decode in order from the start (the ones to predict), fault = a sentence naming the first damaged or
    missing frame (None for a sound clip)."""

    fps: Fraction
    hw: tuple[int, int]
    frames: int
    fault: str | None


def _open(path):
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise VideoError(f"{path}: not a readable video ({err.strerror or err})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: holds no video stream")
    return container


def scan_clip(path) -> ClipScan:
    """Decode the whole clip once (no conversion, nothing kept) to count its frames and find damage: a frame
    the decoder raises on ends the usable part there; a gap in the frames' timestamps names a frame the decoder
    skipped (FFmpeg drops a frame it cannot conceal), reported when the count falls short of the header's.
    Raises VideoError for a file that is not a readable video."""
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate
        if not fps:
            raise VideoError(f"{path}: its video stream has no frame rate")
        fps = Fraction(fps).limit_denominator(100000)
        announced, count, first_time, gap, fault = stream.frames, 0, None, None, None
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    first_time = frame.time if first_time is None else first_time
                    if gap is None and round((frame.time - first_time) * fps) > count:
                        gap = count
                count += 1
        except av.FFmpegError as err:
            fault = f"frame {count} could not be decoded ({err.strerror or err})"
        hw = (stream.codec_context.height, stream.codec_context.width)
    if fault is None and announced and count < announced:
        fault = (f"frame {gap} is missing (damaged; the decoder skipped it)" if gap is not None else
                 f"the clip ends at frame {count} of the {announced} its header announces (truncated?)")
    if count == 0:
        raise VideoError(f"{path}: no frame could be decoded" + (f" ({fault})" if fault else ""))
    return ClipScan(fps, hw, count, fault)


def clip_frames(path, limit: int, wanted=None):
    """RGB uint8 [H, W, 3] frames 0 .. limit-1 of the clip, decoded one at a time; with `wanted` (a set of
    frame numbers) only those, as (number, frame). Raises VideoError naming the frame the decoder fails on."""
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's frame threads: decoding keeps pace with a small network
        frames = container.decode(stream)
        for number in range(limit):
            try:
                frame = next(frames)
            except (av.FFmpegError, StopIteration) as err:
                reason = "the clip ended" if isinstance(err, StopIteration) else (err.strerror or str(err))
                raise VideoError(f"{path}: frame {number} could not be decoded ({reason})") from None
            if wanted is None:
                yield frame.to_ndarray(format="rgb24")
            elif number in wanted:
                yield number, frame.to_ndarray(format="rgb24")


def batched(items, size: int):
    """Lists of up to `size` consecutive items (itertools.batched arrives with Python 3.12)."""
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch


# ---------------------------------------------------------------------------
# Depth over frames
# ---------------------------------------------------------------------------

def clip_depth_range(model, depth_scale, path, scan: ClipScan, *, flip: bool) -> tuple[float, float]:
    """(near, far) metres for the clip's colours: RANGE_PERCENTILES of the depth of RANGE_SAMPLES frames spread
    evenly over it, each predicted at the network's input size (its range is the full-size map's, at a fraction
    of the memory). At least 1 mm apart."""
    numbers = set(np.linspace(0, scan.frames - 1, min(RANGE_SAMPLES, scan.frames)).round().astype(int).tolist())
    low_res = model.input_shape[1:3]
    depths = [predict_depth_m(model, rgb, depth_scale, flip=flip, out_hw=low_res)
              for _, rgb in clip_frames(path, scan.frames, wanted=numbers)]
    near, far = np.percentile(np.stack(depths), RANGE_PERCENTILES)
    return float(near), float(max(far, near + 1e-3))


class TemporalSmoothing:
    """An exponential average of depth maps [H, W] metres over frames, one call per frame: s_0 = d_0,
    s_t = alpha * s_(t-1) + (1 - alpha) * d_t. alpha = 0 returns each depth unchanged; alpha near 1 holds the
    past longer (about 1 / (1 - alpha) frames). Averaging metres, not the network's inverse depth, keeps a still
    scene's depth where the frames put it. Returns float32 [H, W]."""

    def __init__(self, alpha: float):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"the smoothing weight must be in [0, 1), got {alpha}")
        self.alpha, self.state = alpha, None

    def __call__(self, depth_m: np.ndarray) -> np.ndarray:
        if self.state is None or self.alpha == 0.0:
            self.state = np.asarray(depth_m, np.float32)
        else:
            self.state = (self.alpha * self.state + (1.0 - self.alpha) * depth_m).astype(np.float32)
        return self.state


def frame_depths(model, depth_scale, path, frames: int, *, batch_size: int, flip: bool, smoothing: float):
    """(RGB uint8 [H, W, 3], depth float32 [H, W] metres) for frames 0 .. frames-1, predicted batch_size at a
    time (predict.predict_depth_m, at the frame's size) and averaged over time by TemporalSmoothing(smoothing)."""
    smooth = TemporalSmoothing(smoothing)
    for batch in batched(clip_frames(path, frames), batch_size):
        for rgb, depth in zip(batch, predict_depth_m(model, np.stack(batch), depth_scale, flip=flip)):
            yield rgb, smooth(depth)


# ---------------------------------------------------------------------------
# Pictures of a frame
# ---------------------------------------------------------------------------

def colorbar_strip(height: int, limits) -> np.ndarray:
    """A vertical colour bar uint8 [height, w, 3] for limits = (near, far) metres: near at the top (the map's
    bright end), COLORBAR_TICKS labels in metres on white beside it."""
    font = ImageFont.load_default(size=max(10, height // 24))
    labels = [f"{v:.2f} m" for v in np.linspace(*limits, COLORBAR_TICKS)]
    bar_w = max(8, height // 20)
    text_w = int(max(font.getlength(label) for label in labels)) + 6
    strip = Image.new("RGB", (bar_w + text_w, height), "white")
    column = figures.colorize(np.linspace(*limits, height)[:, None], *limits)  # [height, 1, 3]
    strip.paste(Image.fromarray((column * 255).round().astype(np.uint8)).resize((bar_w, height)), (0, 0))
    draw = ImageDraw.Draw(strip)
    for i, label in enumerate(labels):
        y = round(i * (height - 1) / (COLORBAR_TICKS - 1))
        draw.text((bar_w + 3, y), label, fill="black", font=font,
                  anchor="lt" if i == 0 else "lb" if i == COLORBAR_TICKS - 1 else "lm")
    return np.asarray(strip)


def colored_depth(depth_m: np.ndarray, limits) -> np.ndarray:
    """Depth [H, W] metres -> uint8 [H, W, 3] in figures.DEPTH_CMAP over limits = (near, far) metres."""
    return (figures.colorize(depth_m, *limits) * 255).round().astype(np.uint8)


def even_sized(frame: np.ndarray) -> np.ndarray:
    """Pad uint8 [H, W, 3] with a black row/column to even sides: H.264's 4:2:0 colour needs them."""
    h, w = frame.shape[:2]
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0))) if h % 2 or w % 2 else frame


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

class DepthVideo:
    """An H.264 .mp4 written a frame at a time at `fps`; `comment` goes in the file's metadata."""

    def __init__(self, path, fps: Fraction, hw, comment: str):
        self.container = av.open(str(path), "w")
        self.container.metadata["comment"] = comment
        self.stream = self.container.add_stream(OUTPUT_CODEC, rate=fps)
        self.stream.height, self.stream.width = hw
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": OUTPUT_CRF}

    def write(self, frame: np.ndarray) -> None:
        self.container.mux(self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))

    def close(self) -> None:
        self.container.mux(self.stream.encode())  # the frames the encoder still holds
        self.container.close()


@dataclasses.dataclass
class VideoResult:
    """What predict_video wrote: the depth video, the frames written, the colour range (near, far) metres and
    the sentence naming a damaged frame (None for a sound clip)."""

    video: Path
    frames: int
    limits: tuple[float, float]
    fault: str | None


def frame_depth_writer(out_dir: Path, stem: str, kind: str | None, scan: ClipScan, png_codec: str):
    """A function (frame number, depth [H, W] metres) -> None saving one frame's depth, or None for kind None:
    "png": out_dir/stem_depth_frames/stem_000000.png (predict.save_depth_png16 in png_codec); "npy":
    out_dir/stem_depth.npy, float32 [frames, H, W], through a memory map (frames never pile up in memory)."""
    if kind == "png":
        folder = out_dir / f"{stem}_depth_frames"
        folder.mkdir(exist_ok=True)
        return lambda number, depth: save_depth_png16(folder / f"{stem}_{number:06d}.png", depth, png_codec)
    if kind == "npy":
        stack = np.lib.format.open_memmap(out_dir / f"{stem}_depth.npy", mode="w+", dtype=np.float32,
                                          shape=(scan.frames, *scan.hw))

        def write(number, depth):
            stack[number] = depth  # a shared mapping: the file holds it, even if the clip stops early
        return write
    return None


def predict_video(model, depth_scale, path, out_dir: Path, stem: str, *, batch_size: int, flip: bool,
                  depth_only: bool, frame_depth: str | None, smoothing: float, png_codec: str) -> VideoResult:
    """Write out_dir/stem_depth.mp4 for the clip at `path` (see the module's docstring), plus every frame's depth
    when frame_depth is "png" or "npy"; returns what was written. smoothing: smoothed_depths' alpha (0 = off).
    Raises VideoError for a file that is not a readable video; a damaged clip is written up to the damage."""
    scan = scan_clip(path)
    limits = clip_depth_range(model, depth_scale, path, scan, flip=flip)
    save_depth = frame_depth_writer(out_dir, stem, frame_depth, scan, png_codec)
    bar = None if depth_only else colorbar_strip(scan.hw[0], limits)
    width = scan.hw[1] * (1 if depth_only else 2) + (0 if bar is None else bar.shape[1])
    out_hw = (scan.hw[0] + scan.hw[0] % 2, width + width % 2)
    video_path = out_dir / f"{stem}_depth.mp4"
    comment = (f"depth colours {figures.DEPTH_CMAP} from {limits[0]:.3f} m (near) to {limits[1]:.3f} m (far), "
               f"the {RANGE_PERCENTILES[0]:g}-{RANGE_PERCENTILES[1]:g}th percentile of {RANGE_SAMPLES} frames")
    writer, written, fault = DepthVideo(video_path, scan.fps, out_hw, comment), 0, scan.fault
    try:
        pairs = frame_depths(model, depth_scale, path, scan.frames, batch_size=batch_size, flip=flip,
                             smoothing=smoothing)
        with tqdm(total=scan.frames, desc=Path(path).name, unit="frame") as progress:
            for rgb, depth in pairs:
                picture = colored_depth(depth, limits)
                if bar is not None:
                    picture = np.concatenate([rgb, picture, bar], axis=1)
                writer.write(even_sized(picture))
                if save_depth is not None:
                    save_depth(written, depth)
                written += 1
                progress.update()
    except VideoError as err:  # damage the first pass did not meet
        fault = str(err).removeprefix(f"{path}: ")
    finally:
        writer.close()
    return VideoResult(video_path, written, limits, fault)


def predict_videos(model, depth_scale, paths, stems, out_dir: Path, **options) -> int:
    """predict_video for each clip in `paths` (its outputs named by `stems`), a line per clip on stdout (its
    colour range) and a warning on stderr for each damaged or unreadable one; returns how many of those there
    were. options: predict_video's keyword arguments."""
    failed = 0
    for path, stem in zip(paths, stems):
        try:
            result = predict_video(model, depth_scale, path, out_dir, stem, **options)
        except VideoError as err:
            tqdm.write(str(err), file=sys.stderr)
            failed += 1
            continue
        if result.fault is not None:
            tqdm.write(f"warning: {path}: {result.fault}; depth written for its first {result.frames} frames "
                       f"(0-{result.frames - 1}), kept in {result.video}", file=sys.stderr)
            failed += 1
        near, far = result.limits
        print(f"{path}: {result.frames} frames -> {result.video} (colours from {near:.2f} m to {far:.2f} m: the "
              f"{RANGE_PERCENTILES[0]:g}-{RANGE_PERCENTILES[1]:g}th percentile of {RANGE_SAMPLES} sampled frames)")
    return failed
