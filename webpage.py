"""The web page app.py serves (Gradio): a photograph or webcam frame and its depth with a comparison slider, the
colour map's scale in metres, the depth where you click, a 3D view of the coloured point cloud, and downloads
of the depth as a 16-bit PNG (millimetres; its depth_units_per_metre text chunk says so), a float32 .npy in
metres and the point cloud (.ply), all as predict.py writes them; a video gives its depth video (video.py).
Every --model predict.py takes works (backends.load_depth_model); with several, the page offers a choice.
Its own module, so app.py checks its arguments before this one's imports load Gradio and TensorFlow.
"""
from __future__ import annotations

import quiet  # noqa: F401  first: it quiets TensorFlow's C++ logging before TensorFlow loads
import math
import tempfile
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

import figures
import nyu
import predict
import video
from backends import load_depth_model
from filecheck import IMAGE_ERRORS

VIEW_POINTS = 150_000  # at most this many points in the page's 3D view (the .ply download keeps every pixel)
SCALE_HEIGHT = 360  # pixels: the colour scale beside the slider


def error_text(name: str, reason: str) -> str:
    return f"**error:** {name}: {reason}"


def photo_outputs(model, depth_scale, rgb: np.ndarray, stem: str, out_dir: Path) -> dict:
    """Depth of one photograph RGB uint8 [H, W, 3] (predict.predict_depth_m) and the files the page offers:
    {"depth_m": [H, W] metres, "limits": (near, far) metres, "colour": uint8 [H, W, 3], "files": [16-bit PNG,
    .npy, .ply], "view": a .ply of at most VIEW_POINTS points}. Raises predict.NonFiniteDepth for NaN or inf."""
    depth_m = predict.predict_depth_m(model, rgb, depth_scale)
    if not np.isfinite(depth_m).all():
        raise predict.NonFiniteDepth("this", 1, 1)
    limits = figures.depth_limits([depth_m])
    limits = (limits[0], max(limits[1], limits[0] + 1e-3))
    png, npy, ply = out_dir / f"{stem}_depth.png", out_dir / f"{stem}_depth.npy", out_dir / f"{stem}.ply"
    predict.save_depth_png16(png, depth_m, predict.png_codec_for(depth_scale.max_depth_m))
    np.save(npy, depth_m)
    intrinsics = nyu.scaled_intrinsics(depth_m.shape)
    points = predict.back_project(depth_m, intrinsics)
    camera = " ".join(f"{k} {v:.4f}" for k, v in intrinsics.items())
    predict.write_ply(ply, points, rgb, comment=f"metres; camera {camera}")
    step = max(1, math.ceil(math.sqrt(depth_m.size / VIEW_POINTS)))
    view = out_dir / f"{stem}_view.ply"
    # x right, y down in the camera's frame: y and z flipped so the viewer shows the scene upright, facing it
    shown = points[::step, ::step] * np.array([1.0, -1.0, -1.0], np.float32)
    predict.write_ply(view, shown, rgb[::step, ::step], comment="metres; every pixel in the .ply download")
    return {"depth_m": depth_m, "limits": limits, "colour": video.colored_depth(depth_m, limits),
            "files": [str(png), str(npy), str(ply)], "view": str(view)}


def read_photo(upload, webcam) -> tuple[np.ndarray, str]:
    """(RGB uint8 [H, W, 3], output stem) of an uploaded file path or a webcam frame (RGB array). Raises
    ValueError with the sentence the page shows for anything else: Pillow's decompression-bomb limit (89
    megapixels) is an error here, not a warning, so one upload cannot take the server's memory."""
    if upload is None:
        if webcam is None:
            raise ValueError("choose a photograph first")
        return np.asarray(webcam)[..., :3], "webcam"
    path = Path(upload)
    if path.stat().st_size == 0:
        raise ValueError(f"{path.name} is an empty file (0 bytes); choose a photograph")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            rgb, _ = predict.open_rgb(path)
    except Image.DecompressionBombWarning as err:
        raise ValueError(f"{path.name} is too large to process here ({err})") from None
    except IMAGE_ERRORS as err:
        raise ValueError(f"{path.name} is not a readable image ({err}); choose a JPEG, PNG or another photo "
                         "format") from None
    return rgb, path.stem


class Page:
    """The models (loaded once at start) and the page's event handlers."""

    def __init__(self, models: dict):
        self.models = models  # label -> (model, DepthScale)

    def photo(self, label, upload, webcam):
        """The photo handler: (slider pair, scale image, clickable depth image, 3D view, downloads, status
        Markdown, the depth map for click reading)."""
        nothing = (None, None, None, None, None)
        try:
            rgb, stem = read_photo(upload, webcam)
            model, depth_scale = self.models[label]
            out = photo_outputs(model, depth_scale, rgb, stem, Path(tempfile.mkdtemp(prefix="depth-app-")))
        except (ValueError, OSError) as err:
            return (*nothing, error_text(Path(upload).name if upload else "photo", str(err)), None)
        near, far = out["limits"]
        status = (f"depth of **{stem}** by {label}: {near:.2f} m (near, yellow) to {far:.2f} m (far, purple); "
                  "click the depth map to read a depth")
        scale = video.colorbar_strip(SCALE_HEIGHT, out["limits"])
        return ((rgb, out["colour"]), scale, out["colour"], out["view"], out["files"], status, out["depth_m"])

    @staticmethod
    def read_depth(depth_m, event: gr.SelectData) -> str:
        """The depth in metres at the clicked pixel (event.index = [column, row] of the shown image)."""
        if depth_m is None:
            return "choose a photograph first"
        column, row = event.index
        return f"depth at column {column}, row {row}: **{depth_m[row, column]:.3f} m**"

    def clip(self, label, upload):
        """The video handler: (depth video, downloads, status Markdown)."""
        if upload is None:
            return None, None, "choose a video first"
        path = Path(upload)
        if not video.is_video(path):
            return None, None, error_text(path.name, f"not a video file; choose {' '.join(video.VIDEO_SUFFIXES)}")
        model, depth_scale = self.models[label]
        out_dir = Path(tempfile.mkdtemp(prefix="depth-app-"))
        try:
            result = video.predict_video(model, depth_scale, path, out_dir, path.stem, batch_size=4, flip=True,
                                         depth_only=False, frame_depth="npy", smoothing=0.0,
                                         png_codec=predict.png_codec_for(depth_scale.max_depth_m))
        except video.VideoError as err:
            return None, None, error_text(path.name, str(err).removeprefix(f"{path}: "))
        near, far = result.limits
        status = (f"{result.frames} frames of **{path.name}**: colours from {near:.2f} m to {far:.2f} m over the "
                  "whole clip" + (f"; warning: {result.fault}" if result.fault else ""))
        return str(result.video), [str(result.video), str(out_dir / f"{path.stem}_depth.npy")], status


def build_page(models: dict) -> gr.Blocks:
    """The Gradio page for models = {label: (model, DepthScale)}, as load_models returns them."""
    page = Page(models)
    labels = list(models)
    with gr.Blocks(title="Monocular depth") as blocks:
        gr.Markdown("# Monocular depth\nDrop a photograph or a video; depth is in metres.")
        model_choice = gr.Dropdown(labels, value=labels[0], label="model", visible=len(labels) > 1)
        with gr.Tab("Photo"):
            with gr.Row():
                upload = gr.File(label="photograph (drop or click)", file_types=["image"], elem_id="photo")
                webcam = gr.Image(label="or the webcam", sources=["webcam"], type="numpy", elem_id="webcam")
            status = gr.Markdown(elem_id="status")
            with gr.Row():
                slider = gr.ImageSlider(label="photo | depth", elem_id="slider", scale=5, max_height=SCALE_HEIGHT)
                scale = gr.Image(label="scale (m)", show_label=False, interactive=False, elem_id="scale", scale=1,
                                 height=SCALE_HEIGHT)
            with gr.Row():
                with gr.Column():
                    readout = gr.Markdown("click the depth map below to read a depth", elem_id="readout")
                    depth_image = gr.Image(label="depth (click to read it)", interactive=False, elem_id="depth",
                                           height=SCALE_HEIGHT)
                cloud = gr.Model3D(label="point cloud", display_mode="point_cloud", elem_id="cloud")
            downloads = gr.File(label="downloads: 16-bit PNG (millimetres), .npy (float32 metres), .ply (metres)",
                                file_count="multiple", interactive=False, elem_id="downloads")
            depth_state = gr.State()
        with gr.Tab("Video"):
            clip_upload = gr.File(label="video (" + " ".join(video.VIDEO_SUFFIXES) + ")", elem_id="clip")
            clip_status = gr.Markdown(elem_id="clip-status")
            clip_out = gr.Video(label="depth video", interactive=False, elem_id="clip-depth")
            clip_files = gr.File(label="downloads: depth video, every frame's depth (.npy, metres)",
                                 file_count="multiple", interactive=False)
        photo_in = [model_choice, upload, webcam]
        photo_out = [slider, scale, depth_image, cloud, downloads, status, depth_state]
        for trigger in (upload.upload, webcam.change, model_choice.change):
            trigger(page.photo, photo_in, photo_out)
        depth_image.select(page.read_depth, [depth_state], readout)
        clip_upload.upload(page.clip, [model_choice, clip_upload], [clip_out, clip_files, clip_status])
    return blocks


def load_models(paths) -> dict:
    """{path: (model, DepthScale)} for every --model (backends.load_depth_model); its errors propagate."""
    return {str(path): load_depth_model(path) for path in paths}
