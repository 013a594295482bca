"""The synthetic NYU-format dataset: procedural indoor rooms with exact metric depth, as NYU Depth V2's
Kinect would see them, written in the file layout DenseDepth ships NYU in.

    python -m synth --out data/synth --train 600 --test 40

    import synth
    rgb, depth_m = synth.render_frame(seed=0)                 # uint8 [480, 640, 3], float32 [480, 640] metres
    synth.ensure_synthetic("data/synth")                       # written unless both zips are already there

A frame is made in this order, one module each:
    rooms.py, furniture.py  draw a random scene (scene.py's dataclasses) from one seed
    raycast.py              the nearest surface along every pixel's ray, and its z-depth
    textures.py, shading.py albedo, normals and light -> the RGB image
    kinect.py               exact depth -> the Kinect's depth, holes included
    render.py               render_frame: all of the above
    dataset.py, cli.py      frames -> nyu_data.zip + nyu_test.zip, and its command line
"""
from synth.dataset import SYNTH_DIR, SYNTH_FRAMES, ensure_synthetic, write_synthetic
from synth.render import render_frame

__all__ = ["SYNTH_DIR", "SYNTH_FRAMES", "ensure_synthetic", "render_frame", "write_synthetic"]
