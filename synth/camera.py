"""What a cheap indoor camera does to a rendered image: exposure and white-balance error, slight defocus, sensor
noise and JPEG compression.

Real RGB-D frames (NYU Depth V2's Kinect v1 colour camera, TUM, SUN RGB-D, Kinect v2) are often under- or
over-exposed, tinted by the auto white balance, a little soft, grainy in dim rooms and stored as JPEG; a
renderer's frames are none of these. Noise matters beyond looks: it is fine detail at every depth, where a
renderer's fine detail is only that of far, small things. Each effect's range is a plain camera's, not fitted to
any test frame.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

EXPOSURE_STOPS = (-1.0, 0.7)  # exposure error in stops (log2 of the gain): dim rooms are more common than bright
WHITE_BALANCE_SIGMA = 0.07  # per-channel log-gain spread of an auto white balance's error
BLUR_SIGMA_PX = (0.0, 1.2)  # Gaussian defocus at 640x480
NOISE_SIGMA = (1.0, 6.0)  # sensor noise's standard deviation in 8-bit levels, per pixel and channel
JPEG_QUALITY = (50, 95)  # what cameras and datasets store colour frames at
DISPLAY_GAMMA = 2.2  # shading.sensor_image's encoding, undone to apply gains in linear light


def camera_effects(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [h, w, 3]: gains in linear light (exposure x white balance), then defocus blur,
    then Gaussian sensor noise, then a JPEG round trip at a random quality. Draws its randomness from rng after
    the scene's draws, so a frame keeps its scene and depth."""
    stops = rng.uniform(*EXPOSURE_STOPS)
    gains = np.float32(2.0 ** stops) * np.exp(rng.normal(0.0, WHITE_BALANCE_SIGMA, 3)).astype(np.float32)
    linear = (rgb.astype(np.float32) / 255.0) ** DISPLAY_GAMMA * gains
    display = np.clip(linear, 0.0, 1.0) ** (1 / DISPLAY_GAMMA) * 255.0 + 0.5
    image = Image.fromarray(display.astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_SIGMA_PX)))
    grainy = np.asarray(image, np.float32) + rng.normal(0.0, rng.uniform(*NOISE_SIGMA), rgb.shape).astype(np.float32)
    image = Image.fromarray(np.clip(grainy + 0.5, 0, 255).astype(np.uint8))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return np.asarray(Image.open(out).convert("RGB"))
