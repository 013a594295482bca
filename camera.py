"""The NYU Depth V2 camera: the Kinect colour camera's pinhole intrinsics and its frame size.

Shared by the synthetic renderer (synth.py), the data readers (data.py) and the point clouds of predict.py.
"""

# Pixels at 640x480 (Silberman et al. 2012 toolbox, camera_params.m).
NYU_INTRINSICS = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}
NYU_FRAME_HW = (480, 640)  # (height, width) of every NYU frame


def scaled_intrinsics(hw, intrinsics=NYU_INTRINSICS, from_hw=NYU_FRAME_HW) -> dict:
    """`intrinsics` (pixels, calibrated at from_hw) for the same camera's image resized to hw = (height, width).

    Pixel centres sit at integer coordinates (as in synth.py), so a centre moves by (c + 0.5) * scale - 0.5.
    """
    sy, sx = hw[0] / from_hw[0], hw[1] / from_hw[1]
    return {
        "fx": intrinsics["fx"] * sx,
        "fy": intrinsics["fy"] * sy,
        "cx": (intrinsics["cx"] + 0.5) * sx - 0.5,
        "cy": (intrinsics["cy"] + 0.5) * sy - 0.5,
    }
