"""A web page to try depth models on your own photographs and videos (Gradio).

    python app.py --model runs/demo/model.keras [--model exported/model.onnx ...] [--host 127.0.0.1] [--port 7860]

Drop a photograph (or take one with the webcam): the page shows it and its depth with a comparison slider, the
colour map's scale in metres, the depth where you click, a 3D view of the coloured point cloud, and downloads
of the depth as a 16-bit PNG (millimetres; its depth_units_per_metre text chunk says so), a float32 .npy in
metres and the point cloud (.ply), all as predict.py writes them. A video gives its depth video (video.py).
Every --model predict.py takes works (backends.load_depth_model); with several, the page offers a choice.
The page itself is webpage.py, imported only once the arguments are checked: a missing --model is refused at
once, not after the seconds Gradio and TensorFlow take to load.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli import user_error

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860


def missing_model(paths) -> Path | None:
    """The first of paths with nothing there (file or folder), else None: backends.model_format's first check,
    made before anything loads TensorFlow."""
    return next((Path(path) for path in paths if not Path(path).exists()), None)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="a model predict.py takes (.keras, SavedModel folder, .tflite, .onnx); repeat the "
                             "flag to offer several")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to serve on (default {DEFAULT_HOST}: this machine only; 0.0.0.0 lets "
                             "anyone who can reach this machine use the page and its models)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    return args


def main(args: argparse.Namespace) -> int:
    """Serve the page until interrupted; exit code 2 for a --model that cannot be loaded."""
    missing = missing_model(args.model)
    if missing is not None:
        return user_error(f"no model file at {missing}")
    import webpage  # Gradio and TensorFlow: seconds, paid once the cheap checks pass

    try:
        models = webpage.load_models(args.model)
    except (FileNotFoundError, ValueError) as err:
        return user_error(f"{err}")
    webpage.build_page(models).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
