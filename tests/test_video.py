"""video.py through predict.py: a depth video with the clip's frame count, rate and size, frame depths equal to
predict.py's on the same frame as a still, memory flat in the clip's length, damaged clips named by frame, and
the exponential average against hand-computed values."""
import tracemalloc
import weakref
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

import nyu
import predict
import video
from test_predict import tiny_unet

FPS = 12
HW = (48, 64)  # the tiny model's input size; a clip at another size would be resized like a photo


def write_clip(path, frames: int, hw=HW, codec="libx264", pix_fmt="yuv420p", seed=0):
    """A clip of random-noise frames (a different picture every frame) at FPS, written with PyAV."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.height, stream.width = hw
        stream.pix_fmt = pix_fmt
        for _ in range(frames):
            rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def decoded_frame(path, number: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == number:
                return frame.to_ndarray(format="rgb24")


def video_facts(path):
    """(frame count, frame rate, (H, W)) of a written video, counted by decoding it."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        return count, stream.average_rate, (stream.codec_context.height, stream.codec_context.width)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_unet().save(path)
    return path


def test_depth_video_keeps_frames_rate_and_size_and_each_frame_is_the_still_depth(tmp_path, model_path, capsys):
    clip = write_clip(tmp_path / "walk.mp4", frames=10)
    out = tmp_path / "out"
    assert predict.main(predict.parse_args(["--model", str(model_path), str(clip), "--out", str(out),
                                            "--video-depth-only", "--frame-depth", "png"])) == 0
    assert video_facts(out / "walk_depth.mp4") == (10, Fraction(FPS), HW)
    assert "10 frames ->" in capsys.readouterr().out
    frame_pngs = sorted((out / "walk_depth_frames").iterdir())
    assert [p.name for p in frame_pngs] == [f"walk_{i:06d}.png" for i in range(10)]

    # Frame 7 as a still photograph (the pixels the decoder gives, so the codec's loss is the same for both)
    Image.fromarray(decoded_frame(clip, 7)).save(tmp_path / "frame7.png")
    assert predict.main(predict.parse_args(["--model", str(model_path), str(tmp_path / "frame7.png"),
                                            "--out", str(tmp_path / "still")])) == 0
    with Image.open(frame_pngs[7]) as png:
        assert png.text[nyu.PNG_UNIT_KEY] == "1000"
        from_video_mm = np.asarray(png).astype(np.int32)
    still_mm = np.asarray(Image.open(tmp_path / "still" / "frame7_depth.png")).astype(np.int32)
    assert np.abs(from_video_mm - still_mm).max() <= 1  # millimetres

    # Side by side, as a .npy stack: photo | map | colour bar, the same depths
    assert predict.main(predict.parse_args(["--model", str(model_path), str(clip), "--out", str(out),
                                            "--frame-depth", "npy"])) == 0
    count, _, (height, width) = video_facts(out / "walk_depth.mp4")
    bar_width = video.colorbar_strip(HW[0], (1.0, 2.0)).shape[1]
    assert (count, height, width) == (10, HW[0], 2 * HW[1] + bar_width + bar_width % 2)
    stack = np.load(out / "walk_depth.npy")
    assert stack.shape == (10, *HW) and stack.dtype == np.float32
    np.testing.assert_allclose(stack[7], still_mm / 1000.0, atol=0.0011)


def test_memory_stays_flat_in_the_clip_length(tmp_path, model_path, monkeypatch):
    """Writing a 60-frame clip holds no more frames at once than a 6-frame clip, and its peak of Python-allocated
    memory (NumPy's arrays included) is the same: nothing grows with the clip. The reader is video.clip_frames,
    counted: each frame it yields is copied (so tracemalloc sees it) and watched by a weak reference. 54 more
    96x128 frames held would be 54 x (37 KB of RGB + 49 KB of depth) = 4.6 MB."""
    model, depth_scale = predict.load_depth_model(model_path)
    read_frames, yielded, most_alive = video.clip_frames, [], []

    def counted_frames(path, limit, wanted=None):
        for frame in read_frames(path, limit, wanted):
            if wanted is None:
                frame = Frame(frame)
                yielded.append(weakref.ref(frame))
                most_alive.append(sum(ref() is not None for ref in yielded))
            yield frame

    monkeypatch.setattr(video, "clip_frames", counted_frames)
    peaks = {}
    for frames in (6, 60):
        clip = write_clip(tmp_path / f"clip{frames}.mp4", frames, hw=(96, 128))
        out = tmp_path / f"out{frames}"
        out.mkdir()
        yielded.clear(), most_alive.clear()
        tracemalloc.start()
        result = video.predict_video(model, depth_scale, clip, out, "clip", batch_size=2, flip=True,
                                     depth_only=False, frame_depth="npy", smoothing=0.5, png_codec="png16_mm")
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.frames == frames and result.fault is None
        assert max(most_alive) <= 4  # a batch of 2 and the next one being read
    assert peaks[60] < peaks[6] + 1_000_000, peaks


class Frame(np.ndarray):
    """A copied frame that a weak reference can watch (a plain ndarray view of PyAV's buffer is not traced)."""

    def __new__(cls, rgb):
        return np.array(rgb).view(cls)


def test_a_truncated_clip_is_named_by_frame_and_what_was_written_is_kept(tmp_path, model_path, capsys):
    clip = write_clip(tmp_path / "cut.avi", frames=20, codec="mjpeg", pix_fmt="yuvj420p")
    data = clip.read_bytes()
    clip.write_bytes(data[:len(data) // 2])  # the header still announces 20 frames
    scan = video.scan_clip(clip)
    assert scan.frames < 20
    out = tmp_path / "out"
    assert predict.main(predict.parse_args(["--model", str(model_path), str(clip), "--out", str(out)])) == 1
    err = capsys.readouterr().err
    assert (f"warning: {clip}: the clip ends at frame {scan.frames} of the 20 its header announces (truncated?); "
            f"depth written for its first {scan.frames} frames (0-{scan.frames - 1}), kept in "
            f"{out / 'cut_depth.mp4'}") in err
    assert video_facts(out / "cut_depth.mp4")[0] == scan.frames


def test_a_file_that_is_not_a_video_is_named_and_the_other_inputs_are_written(tmp_path, model_path, capsys):
    (tmp_path / "notes.mp4").write_text("not a video")
    Image.fromarray(np.zeros((*HW, 3), np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert predict.main(predict.parse_args(["--model", str(model_path), str(tmp_path / "notes.mp4"),
                                            str(tmp_path / "photo.png"), "--out", str(out)])) == 1
    assert f"{tmp_path / 'notes.mp4'}: not a readable video (Invalid data found when processing input)" in \
        capsys.readouterr().err
    assert (out / "photo_depth.png").is_file() and not (out / "notes_depth.mp4").exists()


def test_temporal_smoothing_is_an_exponential_average_in_metres():
    smooth = video.TemporalSmoothing(0.5)
    got = [float(smooth(np.full((2, 2), d, np.float32))[0, 0]) for d in (1.0, 2.0, 4.0)]
    assert got == [1.0, 1.5, 2.75]  # 1; 0.5 * 1 + 0.5 * 2; 0.5 * 1.5 + 0.5 * 4
    off = video.TemporalSmoothing(0.0)
    assert [float(off(np.full((1, 1), d, np.float32))[0, 0]) for d in (1.0, 3.0)] == [1.0, 3.0]


def test_a_smoothing_weight_outside_0_1_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args(["--model", "m.keras", "clip.mp4", "--temporal-smoothing", "1"])
    assert exit_info.value.code == 2
    assert "--temporal-smoothing must be in [0, 1), got 1.0" in capsys.readouterr().err


def test_the_flicker_measure_counts_only_pixels_the_sensor_measured_in_both_frames():
    from benchmarks.flicker import mean_frame_change, score_smoothing

    sensor = [np.array([[1.0, 0.0]]), np.array([[2.0, 5.0]]), np.array([[2.0, 5.0]])]
    depths = [np.array([[1.0, 9.0]]), np.array([[3.0, 1.0]]), np.array([[3.0, 2.0]])]
    assert mean_frame_change(depths, sensor) == 1.25  # pairs: |3 - 1| on the first pixel only; (0 + |2 - 1|) / 2
    row = score_smoothing(np.stack(depths).astype(np.float32), sensor, alpha=0.5)
    # smoothed first pixel 1, 2, 2.5 (the second 9, 5, 3.5): changes 1 then (0.5 + 1.5) / 2; abs_rel over the
    # 5 measured pixels: (0 + 0 + 0 + 0.25 + 0.3) / 5
    assert row["frame_change_m"] == pytest.approx(1.0)
    assert row["abs_rel"] == pytest.approx((0.25 + 0.3) / 5, abs=1e-6)
