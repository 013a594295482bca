"""The baseline loader: per sample in Python, as DenseDepth's (decode with PIL, resize with scikit-image,
augment in numpy), as a keras.utils.PyDataset that Keras's fit, evaluate or predict run on worker threads."""
from __future__ import annotations

import dataclasses
import io
import zipfile

import keras
import numpy as np
import skimage.transform
from PIL import Image

from data import Augment
from depth import DepthScale, pack_target
from nyu import DepthCodec
from layouts import PairReader, Split


class DenseDepthLoader(keras.utils.PyDataset):
    """The per-sample Python loader DenseDepth trains with (its NYU_BasicAugmentRGBSequence), as a PyDataset:
    each sample is read with split.reader, decoded with PIL, resized with scikit-image and augmented in numpy.

    Batches are data.make_dataset's: (rgb float32 [B, *input_hw, 3] in [0, 1], y_true float32
    [B, *target_hw, 2] = encoded depth and validity mask). shuffle=True orders the frames once, seeded, as
    DenseDepth does; augmentation=None turns augmentation off (as make_dataset's does). `workers` threads
    build batches when Keras iterates it (fit, evaluate, predict); iterating it by hand uses none.
    """

    def __init__(self, split: Split, *, batch_size: int, input_hw, target_hw, depth_scale: DepthScale,
                 augmentation: Augment | None = Augment(), shuffle: bool = True, seed: int = 0, workers: int = 2):
        super().__init__(workers=workers)
        if split.rgb_format != "image" or not split.depth_codec.png:
            raise ValueError("the DenseDepth-style loader reads image files, "
                             f"not {split.rgb_format} / {split.depth_format}")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.input_hw, self.target_hw = tuple(input_hw), tuple(target_hw)
        self.depth_scale, self.augmentation = depth_scale, augmentation
        self.order = np.random.default_rng(seed).permutation(len(split)) if shuffle else np.arange(len(split))

    def __len__(self):
        return len(self.split) // self.batch_size

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        rgb, y_true = zip(*(self.example(int(row)) for row in rows))
        return np.stack(rgb), np.stack(y_true)

    def example(self, row: int):
        """Frame `row` of the split -> (rgb [*input_hw, 3], y_true [*target_hw, 2]), augmented unless off."""
        rgb_bytes, depth_bytes, _ = self.split.reader(self.split.keys[row])
        rgb = skimage_rgb(pil_rgb(rgb_bytes), self.input_hw)
        y_true = skimage_target(pil_depth_m(depth_bytes, self.split.depth_codec), self.target_hw, self.depth_scale)
        if self.augmentation is None:
            return rgb, y_true
        return augment_numpy(rgb, y_true, np.random.default_rng([self.seed, row]), self.augmentation)


# The loader's stages, one function each so the pipeline profile times exactly what the loader runs.

def pil_rgb(blob: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> float32 [H, W, 3] in [0, 1], decoded with PIL."""
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), np.float32) / 255.0


def pil_depth_m(blob: bytes, codec: DepthCodec) -> np.ndarray:
    """Depth PNG bytes stored as `codec` (a Split's depth_codec) -> float32 [H, W] metres (0 = invalid), decoded with PIL."""
    return codec.to_metres(Image.open(io.BytesIO(blob)))


def skimage_resize(image, hw):
    """DenseDepth's nyu_resize: scikit-image's anti-aliased bilinear resize to hw = (h, w), values kept."""
    return skimage.transform.resize(image, hw, order=1, mode="reflect", anti_aliasing=True, preserve_range=True)


def skimage_rgb(rgb: np.ndarray, hw) -> np.ndarray:
    """RGB float [H, W, 3] in [0, 1] -> [*hw, 3] in [0, 1] (skimage_resize)."""
    return np.clip(skimage_resize(rgb, hw), 0.0, 1.0).astype(np.float32)


def skimage_target(depth_m: np.ndarray, hw, depth_scale: DepthScale) -> np.ndarray:
    """Depth [H, W] metres -> y_true float32 [*hw, 2] (encoded depth, mask): data.resize_depth's valid-pixel
    average, so holes never blend into their neighbours, in scikit-image, then depth.pack_target's layout."""
    valid = (depth_m > 0).astype(np.float32)
    weight = skimage_resize(valid, hw)
    mask = weight >= 0.5
    depth = np.where(mask, skimage_resize(depth_m * valid, hw) / np.maximum(weight, 1e-6), 0.0)
    target = np.where(mask, np.asarray(depth_scale.encode(depth)), 0.0)
    return np.asarray(pack_target(target[..., None], mask[..., None]))


def augment_numpy(rgb, y_true, rng: np.random.Generator, config: Augment):
    """data.augment's augmentations in numpy: flip (image and target together), channel permutation,
    brightness, contrast and gamma jitter (image only). rgb [h, w, 3] in [0, 1], y_true [h', w', 2]."""
    if rng.random() < config.flip:
        rgb, y_true = rgb[:, ::-1], y_true[:, ::-1]
    if rng.random() < config.channel_swap:
        rgb = rgb[..., rng.permutation(3)]
    rgb = rgb + rng.uniform(-config.brightness, config.brightness)
    mean = rgb.mean(axis=(0, 1))
    rgb = (rgb - mean) * rng.uniform(1 - config.contrast, 1 + config.contrast) + mean
    rgb = np.clip(rgb, 0.0, 1.0) ** rng.uniform(1 - config.gamma, 1 + config.gamma)
    return rgb.astype(np.float32), np.ascontiguousarray(y_true)


def zip_in_ram(split: Split) -> Split:
    """The split with every file of its zip read into memory first, as DenseDepth's extract_zip does."""
    with zipfile.ZipFile(split.source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return dataclasses.replace(split, reader=PairReader(files.__getitem__))
