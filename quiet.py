"""Imported first by every command-line script: TensorFlow loads here without its C++ start-up logging
(oneDNN and CUDA notes, "failed call to cuInit" on machines without a GPU, grappler's "remapper failed"), so
a command prints only its own output. A TF_CPP_MIN_LOG_LEVEL the user set is kept for what TensorFlow logs once
loaded, and the start-up lines stay hidden whatever it is (TF_CPP_MIN_LOG_LEVEL=3, the usual way to silence
TensorFlow, used to bring them back); only TF_CPP_MIN_LOG_LEVEL=0 shows everything.

TensorFlow 2.21 writes its first messages before absl's logging reads TF_CPP_MIN_LOG_LEVEL, so the level
alone cannot hide them: standard error is pointed at /dev/null while TensorFlow is imported, and only then.
Other native libraries that write to standard error themselves (LiteRT's "Created TensorFlow Lite XNNPACK
delegate for CPU.") are quieted the same way around the calls that print (`native_logging_silenced`).
"""
import contextlib
import os

# Quiet unless the user asked for everything (level 0). The marker tells this module's own level (inherited by the
# processes a script starts: workers, benchmark runs, tests' command lines) from the user's.
QUIET_MARKER = "DEPTH_QUIET_LOGGING"
USERS_LEVEL = None if os.environ.get(QUIET_MARKER) == "1" else os.environ.get("TF_CPP_MIN_LOG_LEVEL")
QUIETING = USERS_LEVEL != "0"


@contextlib.contextmanager
def native_logging_silenced():
    """Point file descriptor 2 at /dev/null for the block, where C and C++ code writes past Python's sys.stderr;
    a no-op when the user set TF_CPP_MIN_LOG_LEVEL=0 (they asked to see every log line)."""
    if not QUIETING:
        yield
        return
    saved_stderr, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


if QUIETING:
    if USERS_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ[QUIET_MARKER] = "1"
    with native_logging_silenced():
        import tensorflow  # noqa: F401
