"""Writers for small datasets in each NYU Depth V2 file layout that layouts.py reads, for the tests.

Each writer takes lists of frames (rgb uint8 [H, W, 3], depth float32 [H, W] in metres, 0 = invalid)
and stores them exactly as the real files do, with the real quantisation.
"""
import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import scipy.io
from PIL import Image


def make_frames(count, hw=(48, 64), seed=0):
    """`count` frames with known depth: a left-to-right ramp plus a per-frame offset, a few zero holes.

    The image brightness follows the depth, so flips can be checked on image and depth together.
    """
    rng = np.random.default_rng(seed)
    h, w = hw
    frames = []
    for i in range(count):
        depth = np.tile(np.linspace(1.0, 6.0, w, dtype=np.float32), (h, 1)) + 0.25 * i
        depth[rng.integers(0, h, 5), rng.integers(0, w, 5)] = 0.0
        grey = (255 * (depth / depth.max())).astype(np.uint8)
        rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
        frames.append((rgb, depth.astype(np.float32)))
    return frames


def png_bytes(array):
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(rgb):
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=95)
    return out.getvalue()


def depth_png8(depth_m):
    """DenseDepth's training depth: 8-bit, 255 = 10 m."""
    return png_bytes(np.clip(np.round(depth_m * 25.5), 0, 255).astype(np.uint8))


def depth_png16(depth_m, units_per_metre=1000):
    """16-bit PNG in millimetres (or another unit: 5000 per metre for TUM RGB-D)."""
    return png_bytes(np.round(depth_m * units_per_metre).astype(np.uint16))


def densedepth_files(train, test):
    """{path inside nyu_data.zip: bytes}: data/nyu2_{train,test}.csv and the files they list."""
    files, rows = {}, {"train": [], "test": []}
    for i, (rgb, depth) in enumerate(train):
        rgb_path, depth_path = f"data/nyu2_train/room_{i % 2}_out/{i}.jpg", f"data/nyu2_train/room_{i % 2}_out/{i}.png"
        files[rgb_path], files[depth_path] = jpeg_bytes(rgb), depth_png8(depth)
        rows["train"].append(f"{rgb_path},{depth_path}")
    for i, (rgb, depth) in enumerate(test):
        rgb_path, depth_path = f"data/nyu2_test/{i:05d}_colors.png", f"data/nyu2_test/{i:05d}_depth.png"
        files[rgb_path], files[depth_path] = png_bytes(rgb), depth_png16(depth)
        rows["test"].append(f"{rgb_path},{depth_path}")
    for name, lines in rows.items():
        files[f"data/nyu2_{name}.csv"] = ("\n".join(lines) + "\n").encode()
    return files


def write_zip(path, files, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return Path(path)


def write_folder(root, files):
    for name, data in files.items():
        (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
        (Path(root) / name).write_bytes(data)
    return Path(root)


def npy_bytes(array):
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def eigen_files(test, crop=(20, 459, 24, 615)):
    """{name: bytes} of DenseDepth's nyu_test.zip: eigen_test_{rgb,depth,crop}.npy."""
    return {
        "eigen_test_rgb.npy": npy_bytes(np.stack([rgb for rgb, _ in test]).astype(np.uint8)),
        "eigen_test_depth.npy": npy_bytes(np.stack([depth for _, depth in test]).astype(np.float32)),
        "eigen_test_crop.npy": npy_bytes(np.asarray(crop, np.int64)),
    }


def write_labeled_mat(path, frames, train_ndx=None, test_ndx=None):
    """nyu_depth_v2_labeled.mat as MATLAB v7.3 stores it: h5py sees images [N, 3, W, H], depths [N, W, H];
    and splits.mat (MATLAB v5, 1-based trainNdxs / testNdxs) beside it when indices are given."""
    images = np.stack([np.transpose(rgb, (2, 1, 0)) for rgb, _ in frames])
    depths = np.stack([depth.T for _, depth in frames]).astype(np.float32)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images)
        f.create_dataset("depths", data=depths)
    if train_ndx is not None:
        scipy.io.savemat(Path(path).parent / "splits.mat", {
            "trainNdxs": np.asarray(train_ndx, np.float64).reshape(-1, 1) + 1,
            "testNdxs": np.asarray(test_ndx, np.float64).reshape(-1, 1) + 1,
        })
    return Path(path)


def write_bts(root, train, test, with_lists):
    """BTS's layout: sync/<scene>/rgb_X.jpg + sync_depth_X.png, official_splits/test/<scene>/ likewise."""
    files, lists = {}, {"train": [], "test": []}
    for name, folder, frames in (("train", "sync", train), ("test", "official_splits/test", test)):
        for i, (rgb, depth) in enumerate(frames):
            scene = f"scene_{i % 2}"
            files[f"{folder}/{scene}/rgb_{i:05d}.jpg"] = jpeg_bytes(rgb)
            files[f"{folder}/{scene}/sync_depth_{i:05d}.png"] = depth_png16(depth)
            lead = "/" if name == "train" else ""  # BTS's train list starts paths with '/'
            lists[name].append(f"{lead}{scene}/rgb_{i:05d}.jpg {lead}{scene}/sync_depth_{i:05d}.png 518.8579")
    if with_lists:
        for name, lines in lists.items():
            files[f"nyu_{name}.txt"] = ("\n".join(lines) + "\n").encode()
    return write_folder(root, files)


def write_pairs(folder, frames, depth_kind, units_per_metre=1000):
    """X_rgb.png with X_depth.png (16-bit, mm unless units_per_metre says otherwise) or X_depth.npy (metres);
    depth_kind "mixed" alternates them, PNG first."""
    files = {}
    for i, (rgb, depth) in enumerate(frames):
        kind = ("png", "npy")[i % 2] if depth_kind == "mixed" else depth_kind
        files[f"cap{i:03d}_rgb.png"] = png_bytes(rgb)
        files[f"cap{i:03d}_depth.{kind}"] = depth_png16(depth, units_per_metre) if kind == "png" else npy_bytes(depth)
    return write_folder(folder, files)


def write_sparse_to_dense(root, train, test):
    """Sparse-to-dense's nyudepthv2/ (Ma & Karaman 2018, what TFDS's nyu_depth_v2 downloads): train/<scene>/<n>.h5
    and val/official/<n>.h5, each HDF5 file holding rgb uint8 [3, H, W] (channels first) and depth float32 [H, W]
    in metres. Train frames alternate between two scenes; files are numbered from 00001 as in the real archive."""
    root = Path(root) / "nyudepthv2"
    for folder, frames in (("train", train), ("val", test)):
        for i, (rgb, depth) in enumerate(frames):
            scene = f"scene_{i % 2:04d}" if folder == "train" else "official"
            path = root / folder / scene / f"{i + 1:05d}.h5"
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as f:
                f.create_dataset("rgb", data=np.transpose(rgb, (2, 0, 1)).astype(np.uint8))
                f.create_dataset("depth", data=depth.astype(np.float32))
    return root


def portrait_jpeg_bytes(upright_rgb):
    """A JPEG stored sideways (as a phone held upright stores it: landscape pixels) with EXIF Orientation 6,
    "rotate 90 degrees clockwise to view", so that a reader honouring EXIF gets `upright_rgb` back."""
    image = Image.fromarray(np.ascontiguousarray(np.rot90(upright_rgb, 1)))  # turned anticlockwise for storage
    exif = image.getexif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=95, exif=exif)
    return out.getvalue()


def odd_pairs(folder):
    """A pairs folder holding an EXIF-portrait frame (64 high, 48 wide upright, its depth likewise) and a 640x480
    RGB with a 200x200 depth; returns the portrait's (rgb, depth)."""
    upright = np.zeros((64, 48, 3), np.uint8)
    upright[:32] = (230, 40, 40)  # bright red top half: a sideways read puts it on one side instead
    upright[32:] = (20, 20, 120)
    depth = np.tile(np.linspace(1.0, 4.0, 64, dtype=np.float32)[:, None], (1, 48))  # far at the bottom
    rng = np.random.default_rng(0)
    return write_folder(folder, {
        "portrait_rgb.jpg": portrait_jpeg_bytes(upright),
        "portrait_depth.png": depth_png16(depth),
        "wrong_rgb.png": png_bytes(rng.integers(0, 256, (480, 640, 3), np.uint8)),
        "wrong_depth.png": depth_png16(np.full((200, 200), 2.0, np.float32)),
    }), (upright, depth)


def write_tum(root, colour, depth, units_per_metre=5000):
    """A TUM RGB-D sequence folder (Sturm et al. 2012, "File Formats"): rgb/<t>.png and depth/<t>.png (16-bit, 5000
    per metre) named by their timestamps, listed in rgb.txt and depth.txt under TUM's three '#' header lines.
    colour: [(timestamp s, rgb uint8 [H, W, 3])], depth: [(timestamp s, depth float32 [H, W] metres)]."""
    files = {}
    for kind, title, frames, encode in (("rgb", "color images", colour, png_bytes),
                                         ("depth", "depth maps", depth, lambda d: depth_png16(d, units_per_metre))):
        lines = [f"# {title}", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp filename"]
        for timestamp, array in frames:
            name = f"{kind}/{timestamp:.6f}.png"
            files[name] = encode(array)
            lines.append(f"{timestamp:.6f} {name}")
        files[f"{kind}.txt"] = ("\n".join(lines) + "\n").encode()
    return write_folder(root, files)


def write_color_depth(root, frames, colour_folder="color", name="{:05d}", depth_name=None, units_per_metre=1000):
    """color/ + depth/ folders of one file per frame: <colour_folder>/<name>.jpg and depth/<depth_name>.png (16-bit,
    mm by default). name "{:05d}" is Open3D's Azure Kinect reader and Redwood samples (color/00000.jpg), "{:06d}" its
    RealSense recorder, "{}" ScanNet's SensorData.py export (color/0.jpg + depth/0.png); depth_name defaults to name."""
    files = {}
    for i, (rgb, depth) in enumerate(frames):
        files[f"{colour_folder}/{name.format(i)}.jpg"] = jpeg_bytes(rgb)
        files[f"depth/{(depth_name or name).format(i)}.png"] = depth_png16(depth, units_per_metre)
    return write_folder(root, files)
