"""Apply a trained depth model to photographs: depth maps in metres, colour previews and point clouds.

    python predict.py --model runs/unet/model.keras photos/ kitchen.jpg "more/*.png" --out outputs/predict --ply

For each input image X it writes X_depth.png (16-bit, millimetres; 1/256 m for a model whose range passes
65.5 m: the PNG names its unit in a depth_units_per_metre text chunk), X_depth.npy (float32 metres) and
X_depth_color.png (colour-mapped, with a legend in metres), all at X's own size; --ply adds X.ply, a
coloured point cloud. `predict_depth_m` is the one inference function; evaluate.py and notebooks import it.
"""
from __future__ import annotations

import quiet  # first: it quiets TensorFlow's C++ logging before TensorFlow loads
import argparse
import sys
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import figures
from cli import user_error
import nyu
from depth import DepthScale
from backends import ExportedModel, add_trust_argument, load_depth_model
from inference import network_depth_m, resize_rgb
from model import depth_scale_of, is_relative
from photos import find_inputs, open_rgb, report_inputs_left_out, unreadable_text
from filecheck import IMAGE_ERRORS

# ---------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------

# model -> its forward pass as a tf.function; weak, so a model dropped by its user is freed with its function.
_FORWARD_PASSES = weakref.WeakKeyDictionary()


def forward_pass(model: keras.Model):
    """model(x) as one tf.function over x float32 [None, h, w, 3] (h, w = the model's input size), traced once.
    An ExportedModel (backends.py) is its own forward pass: its file is a compiled graph already."""
    if isinstance(model, ExportedModel):
        return model
    forward = _FORWARD_PASSES.get(model)
    if forward is None:
        model_ref = weakref.ref(model)  # a strong reference here would keep the weak dictionary's key alive
        signature = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        forward = tf.function(lambda x: model_ref()(x, training=False), input_signature=signature, autograph=False)
        _FORWARD_PASSES[model] = forward
    return forward


def predict_depth_m(model: keras.Model, rgb, depth_scale: DepthScale | None = None, flip: bool = True,
                    out_hw=None) -> np.ndarray:
    """Depth in metres for RGB images of any size, at their own size (or out_hw = (H, W) when given).

    rgb: uint8 [B, H, W, 3] or [H, W, 3]. Each image is resized to the model's input size, predicted and
    decoded to metres with `depth_scale` (default: the model's own, `depth_scale_of`) by
    inference.network_depth_m (the graph export.py writes too), and resized back bilinearly to H x W. flip=True
    averages (in metres) with the prediction on the mirrored image, mirrored back (DenseDepth's test-time
    augmentation). Returns float32 [B, H, W] (or [H, W] for one [H, W, 3] image), clipped to
    [depth_scale.min_depth_m, depth_scale.max_depth_m]. model may also be a backends.ExportedModel (its own
    scale is metres); one whose graph holds the flip average is run once.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim not in (3, 4) or rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB images [B, H, W, 3] or [H, W, 3], got shape {rgb.shape}")
    if depth_scale is None:
        depth_scale = model.depth_scale if isinstance(model, ExportedModel) else depth_scale_of(model)
    flip = flip and not (isinstance(model, ExportedModel) and model.flips_inside)  # done inside its graph
    batch = rgb[None] if rgb.ndim == 3 else rgb
    x = resize_rgb(batch, model.input_shape[1:3])  # [B, h, w, 3] in [0, 1]
    depth = network_depth_m(forward_pass(model), x, depth_scale, flip=flip)  # [B, h', w', 1] metres
    # Clipped before resizing, where it is cheap (interpolation stays inside the range), and the full-size result
    # viewed rather than copied: a 10000x8000 photograph's depth is 320 MB per copy.
    depth = tf.clip_by_value(depth, depth_scale.min_depth_m, depth_scale.max_depth_m)
    out_hw = batch.shape[1:3] if out_hw is None else tuple(out_hw)
    depth = np.asarray(tf.image.resize(depth, out_hw, method="bilinear", antialias=True))[..., 0]
    if depth.min() < depth_scale.min_depth_m or depth.max() > depth_scale.max_depth_m:  # a rounding error away
        depth = np.clip(depth, depth_scale.min_depth_m, depth_scale.max_depth_m)
    return depth[0] if rgb.ndim == 3 else depth  # float32 [B, H, W] or [H, W]


# ---------------------------------------------------------------------------
# Writing results (the inputs are found and read by photos.py)
# ---------------------------------------------------------------------------

def output_stems(paths) -> list[str]:
    """An output name per input: its file stem, numbered (stem_2, stem_3, ...) when stems repeat."""
    stems = []
    for path in paths:
        stem, n = path.stem, 1
        while stem in stems:
            n += 1
            stem = f"{path.stem}_{n}"
        stems.append(stem)
    return stems


# The units X_depth.png may be written in, finest first (keys of nyu.DEPTH_CODECS): NYU's millimetres up to
# 65.5 m, else KITTI's 1/256 m up to 256 m. Each PNG names its unit in its nyu.PNG_UNIT_KEY text chunk.
PNG_CODECS = ("png16_mm", "png16_kitti")


def png_codec_for(max_depth_m: float) -> str:
    """The finest of PNG_CODECS whose 16 bits hold max_depth_m metres (the coarsest when none does)."""
    fits = [name for name in PNG_CODECS if nyu.DEPTH_CODECS[name].max_depth_m >= max_depth_m]
    return fits[0] if fits else PNG_CODECS[-1]


def save_depth_png16(path, depth_m: np.ndarray, codec: str = "png16_mm") -> int:
    """Depth [H, W] metres -> 16-bit greyscale PNG in the unit of nyu.DEPTH_CODECS[codec] (millimetres by
    default), rounded to the nearest unit; 0 = no depth. Returns how many pixels were beyond the largest value
    and so stored as 65535, the saturation value that reads back as no depth (0 whenever the codec is
    png_codec_for the model's range)."""
    png = nyu.DEPTH_CODECS[codec]
    Path(path).write_bytes(png.png_bytes(depth_m))
    return int(np.count_nonzero(depth_m > png.max_depth_m + 0.5 / png.units_per_metre))  # rounds above the top


# NYU's horizontal field of view, radians: what a photo of unknown camera is assumed to span across its longer side.
NYU_WIDE_FOV = 2.0 * np.arctan(nyu.FRAME_HW[1] / 2.0 / nyu.INTRINSICS["fx"])  # 1.105 rad = 63.3 degrees


def photo_intrinsics(hw) -> tuple[dict, str]:
    """(fx, fy, cx, cy in pixels, a sentence saying how they were chosen) for a photo of hw = (H, W) whose camera
    is unknown. A landscape 4:3 photo gets NYU's Kinect calibration scaled to its size (nyu.scaled_intrinsics; the
    scale is the same in x and y). Any other shape gets square pixels (fx = fy): NYU's horizontal field of view
    across the photo's longer side (a camera turned upright turns its wide side with it), principal point at the
    centre. Scaling NYU's fx and fy by different factors would stretch the cloud (Depth-Anything-V2 #142, #52)."""
    height, width = hw
    if height * nyu.FRAME_HW[1] == width * nyu.FRAME_HW[0]:
        return (nyu.scaled_intrinsics(hw),
                f"NYU's Kinect intrinsics scaled from {nyu.FRAME_HW[1]}x{nyu.FRAME_HW[0]} to {width}x{height}")
    focal = max(hw) / 2.0 / np.tan(NYU_WIDE_FOV / 2.0)
    camera = {"fx": focal, "fy": focal, "cx": (width - 1) / 2.0, "cy": (height - 1) / 2.0}
    return camera, (f"square pixels: NYU's horizontal field of view ({np.degrees(NYU_WIDE_FOV):.1f} deg) across the "
                    f"{max(hw)}-pixel longer side of {width}x{height}, centred (give --fx --fy --cx --cy if known)")


def camera_text(intrinsics: dict) -> str:
    """'fx 324.29 fy 324.29 cx 149.50 cy 199.50' (pixels)."""
    return " ".join(f"{k} {v:.2f}" for k, v in intrinsics.items())


def back_project(depth_m: np.ndarray, intrinsics: dict) -> np.ndarray:
    """Depth [H, W] metres -> camera-frame points [H, W, 3] metres (x right, y down, z forward = depth).

    intrinsics: fx, fy, cx, cy in pixels of this image, pixel (u, v) centred at integer column u, row v.
    """
    v, u = np.indices(depth_m.shape, dtype=np.float32)
    x = (u - intrinsics["cx"]) * depth_m / intrinsics["fx"]
    y = (v - intrinsics["cy"]) * depth_m / intrinsics["fy"]
    return np.stack([x, y, depth_m], axis=-1).astype(np.float32)


_PLY_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path, points: np.ndarray, colors: np.ndarray, comment: str = "") -> None:
    """Points [..., 3] metres and colours uint8 [..., 3] -> binary little-endian PLY, one vertex per point."""
    vertices = np.empty(points.size // 3, _PLY_VERTEX)
    for i, axis in enumerate("xyz"):
        vertices[axis] = points.reshape(-1, 3)[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertices[channel] = colors.reshape(-1, 3)[:, i]
    properties = "".join(f"property {'float' if c in 'xyz' else 'uchar'} {c}\n" for c in _PLY_VERTEX.names)
    header = (
        f"ply\nformat binary_little_endian 1.0\ncomment {comment}\n"
        f"element vertex {len(vertices)}\n{properties}end_header\n"
    )
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vertices.tobytes())


def write_outputs(out_dir: Path, stem: str, rgb: np.ndarray, depth_m: np.ndarray, camera: tuple[dict, str] | None,
                  png_codec: str) -> None:
    """Write stem_depth.png (in png_codec's unit), stem_depth.npy and stem_depth_color.png, and stem.ply when a
    camera is given, naming its intrinsics and their source in the PLY's comment and on stderr; a PNG that had to
    clip depths is named on stderr with the count.

    rgb uint8 [H, W, 3] (any size without a camera); depth_m float32 [H, W]; camera: (fx, fy, cx, cy in pixels of
    this H x W image, where they come from), as photo_intrinsics gives them.
    """
    png_path = out_dir / f"{stem}_depth.png"
    if clipped := save_depth_png16(png_path, depth_m, png_codec):
        tqdm.write(f"warning: {png_path}: {clipped} pixels beyond {nyu.DEPTH_CODECS[png_codec].max_depth_m:g} m "
                   f"are stored as 65535 (saturated: no depth); {stem}_depth.npy holds them exactly", file=sys.stderr)
    np.save(out_dir / f"{stem}_depth.npy", depth_m.astype(np.float32))
    figures.depth_color_figure(depth_m, title=stem).savefig(out_dir / f"{stem}_depth_color.png")
    if camera is not None:
        intrinsics, source = camera
        write_ply(out_dir / f"{stem}.ply", back_project(depth_m, intrinsics), rgb,
                  comment=f"metres; camera {camera_text(intrinsics)} pixels ({source})")
        tqdm.write(f"{stem}.ply: camera {camera_text(intrinsics)} pixels ({source})", file=sys.stderr)


class NonFiniteDepth(ValueError):
    """A model predicted NaN or inf depth: refused by predict.py and evaluate.py alike, naming the model and
    on how many of the images."""

    def __init__(self, model_label, bad: int, total: int):
        super().__init__(f"model {model_label} predicted non-finite depth for {bad} of {total} images; it is not "
                         "usable as it is (retrain it, e.g. with a lower --lr)")


def predict_files(model: keras.Model, depth_scale: DepthScale, paths, out_dir: Path, *, batch_size: int, flip: bool,
                  ply: bool, intrinsics: dict | None, png_codec: str) -> tuple[int, int]:
    """Predict every image file in `paths` and write its outputs (`write_outputs`, depth PNGs in png_codec)
    to out_dir; returns (how many could not be read, how many the model predicted non-finite depth for:
    nothing is written for those), each named on stderr. Up to batch_size images are read at a time and those
    of the same size share a network call. Without ply (which colours points from the full image), JPEGs are
    decoded at the scale the network input needs (open_rgb). intrinsics: fx, fy, cx, cy for every point cloud,
    or None for photo_intrinsics of each image's size."""
    unreadable = nonfinite = 0
    jobs = list(zip(paths, output_stems(paths)))
    with quiet.progress_bar(total=len(jobs), desc="predict", unit="image") as progress:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start:start + batch_size]
            by_size = {}  # ((H, W), decoded shape) -> [(stem, rgb)]
            for path, stem in chunk:
                try:
                    rgb, hw = open_rgb(path, None if ply else model.input_shape[1:3])
                except IMAGE_ERRORS as err:
                    tqdm.write(unreadable_text(path, err), file=sys.stderr)
                    unreadable += 1
                    continue
                by_size.setdefault((hw, rgb.shape), []).append((stem, rgb))
            for (hw, _), images in by_size.items():
                batch = np.stack([rgb for _, rgb in images])
                depths = predict_depth_m(model, batch, depth_scale, flip=flip, out_hw=hw)
                camera = None
                if ply:
                    camera = (intrinsics, "given by --fx --fy --cx --cy") if intrinsics else photo_intrinsics(hw)
                for (stem, rgb), depth_m in zip(images, depths):
                    if not np.isfinite(depth_m).all():
                        tqdm.write(f"{stem}: the model predicted non-finite depth; nothing written", file=sys.stderr)
                        nonfinite += 1
                        continue
                    write_outputs(out_dir, stem, rgb, depth_m, camera, png_codec)
            progress.update(len(chunk))
    return unreadable, nonfinite


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

_INTRINSIC_FLAGS = ("fx", "fy", "cx", "cy")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image or video files, folders (every image directly inside) or glob patterns (quote "
                             "them)")
    parser.add_argument("--model", required=True,
                        help="a trained model saved by this project (.keras), or its export by export.py "
                             "(SavedModel folder, .tflite, .onnx)")
    add_trust_argument(parser)
    parser.add_argument("--out", default="outputs/predict", help="output folder (default: outputs/predict)")
    parser.add_argument("--no-flip", action="store_true",
                        help="skip the flip test-time augmentation (twice as fast, slightly less accurate)")
    parser.add_argument("--bs", type=int, default=4,
                        help="images per network call; same-size images are batched (default: 4)")
    cloud = parser.add_argument_group("point clouds")
    cloud.add_argument("--ply", action="store_true", help="also write X.ply, a coloured point cloud in metres")
    for name in _INTRINSIC_FLAGS:
        cloud.add_argument(f"--{name}", type=float, default=None,
                           help=f"camera {name} in pixels of the input image (give all four; default: NYU's Kinect "
                                f"intrinsics scaled to a 4:3 landscape image, else square pixels spanning NYU's "
                                f"horizontal field of view across the longer side)")
    clips = parser.add_argument_group("videos (.mp4 .mov .avi .mkv .webm: X_depth.mp4 at the clip's frame rate; "
                                      "video.py)")
    clips.add_argument("--video-depth-only", action="store_true",
                       help="the depth video shows the colour map alone (default: photo | colour map | scale in m)")
    clips.add_argument("--frame-depth", choices=("png", "npy"), default=None,
                       help="also every frame's depth: 16-bit PNGs in X_depth_frames/ (as X_depth.png's unit) or "
                            "one float32 X_depth.npy [frames, H, W] in metres")
    clips.add_argument("--temporal-smoothing", type=float, default=0.0, metavar="ALPHA",
                       help="average each frame's depth in metres with the previous frames': d = ALPHA * d_before "
                            "+ (1 - ALPHA) * d_now, ALPHA in [0, 1) (default 0: off; docs/video.md measures it)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.temporal_smoothing < 1.0:
        parser.error(f"--temporal-smoothing must be in [0, 1), got {args.temporal_smoothing}")
    given = [name for name in _INTRINSIC_FLAGS if getattr(args, name) is not None]
    if given and len(given) < len(_INTRINSIC_FLAGS):
        parser.error("give all of --fx --fy --cx --cy, or none of them")
    if given and not args.ply:
        parser.error("--fx --fy --cx --cy describe the camera for the point cloud; add --ply")
    if args.bs < 1:
        parser.error(f"--bs must be at least 1, got {args.bs}")
    return args


def main(args: argparse.Namespace) -> int:
    """Run the command line; returns the exit code: 0 all written, 1 some inputs failed, 2 usage error."""
    try:
        model, depth_scale = load_depth_model(args.model, trust_saved_model=args.trust_saved_model)
    except (FileNotFoundError, ValueError) as err:
        return user_error(f"{err}")
    if is_relative(model):
        print(f"note: {args.model} predicts relative depth (up to an unknown scale and shift), not metres",
              file=sys.stderr)
    paths, unmatched, unsupported = find_inputs(args.inputs)
    if not paths:
        report_inputs_left_out([], unsupported)
        what = "no image file this installation can read" if unsupported else "no image file"
        return user_error(f"{what} matched {' '.join(args.inputs)}")
    report_inputs_left_out(unmatched, unsupported)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return user_error(f"cannot create the output folder {out_dir} ({err.strerror})")
    given_intrinsics = {name: getattr(args, name) for name in _INTRINSIC_FLAGS} if args.fx is not None else None
    png_codec = png_codec_for(depth_scale.max_depth_m)
    import video  # here: video.py imports this module
    clips = [path for path in paths if video.is_video(path)]
    paths = [path for path in paths if not video.is_video(path)]
    try:
        failed_clips = video.predict_videos(model, depth_scale, clips, output_stems(paths + clips)[len(paths):],
                                            out_dir, batch_size=args.bs, flip=not args.no_flip,
                                            depth_only=args.video_depth_only, frame_depth=args.frame_depth,
                                            smoothing=args.temporal_smoothing, png_codec=png_codec)
        if not paths:
            return 1 if failed_clips or unmatched or unsupported else 0
        unreadable, nonfinite = predict_files(model, depth_scale, paths, out_dir, batch_size=args.bs,
                                              flip=not args.no_flip, ply=args.ply, intrinsics=given_intrinsics,
                                              png_codec=png_codec)
    except OSError as err:  # the output folder is read-only or full
        return user_error(f"cannot write {err.filename} ({err.strerror}); choose another --out")
    if nonfinite:
        return user_error(f"{NonFiniteDepth(args.model, nonfinite, len(paths) - unreadable)}")
    print(f"wrote depth for {len(paths) - unreadable} of {len(paths)} images to {out_dir} "
          f"(X_depth.png: {nyu.DEPTH_CODECS[png_codec].description})")
    return 1 if unreadable or unmatched or unsupported or failed_clips else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
