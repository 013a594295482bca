"""The NYU Depth V2 camera: the Kinect colour camera's pinhole intrinsics and its frame size.

Shared by the synthetic renderer (synth.py), the data readers (data.py) and the point clouds of predict.py.
"""

# Pixels at 640x480 (Silberman et al. 2012 toolbox, camera_params.m).
NYU_INTRINSICS = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}
NYU_FRAME_HW = (480, 640)  # (height, width) of every NYU frame

