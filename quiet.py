"""Imported first by every command-line script: TensorFlow loads here without its C++ start-up logging
(oneDNN and CUDA notes, "failed call to cuInit" on machines without a GPU, grappler's "remapper failed"), so
a command prints only its own output. A TF_CPP_MIN_LOG_LEVEL the user set wins: TF_CPP_MIN_LOG_LEVEL=0
shows everything.

TensorFlow 2.21 writes its first messages before absl's logging reads TF_CPP_MIN_LOG_LEVEL, so the level
alone cannot hide them: standard error is pointed at /dev/null while TensorFlow is imported, and only then.
"""
import os

if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)
