"""Imported first by every command-line script: TensorFlow loads here without its C++ start-up logging
(oneDNN and CUDA notes, "failed call to cuInit" on machines without a GPU, grappler's "remapper failed"), so
a command prints only its own output. A TF_CPP_MIN_LOG_LEVEL the user set is kept for what TensorFlow logs once
loaded, and the start-up lines stay hidden whatever it is (TF_CPP_MIN_LOG_LEVEL=3, the usual way to silence
TensorFlow, used to bring them back); only TF_CPP_MIN_LOG_LEVEL=0 shows everything.

TensorFlow 2.21 writes its first messages before absl's logging reads TF_CPP_MIN_LOG_LEVEL, so the level
alone cannot hide them: standard error is pointed at /dev/null while TensorFlow is imported, and only then.
Other native libraries that write to standard error themselves (LiteRT's "Created TensorFlow Lite XNNPACK
delegate for CPU.") are quieted the same way around the calls that print (`native_logging_silenced`).

Progress bars (`progress_bar`) are tqdm's on a terminal, and whole lines in a file (a cluster job's log,
`make demo > log 2>&1`), where tqdm's carriage returns would make one endless line.
"""
import contextlib
import os
import sys

from tqdm import tqdm

LOG_EVERY_S = 30.0  # seconds between progress lines in a log file (train.py's --log-every default too)

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


class LogLines(tqdm):
    """tqdm for a file that is not a terminal: each refresh is a whole line (written only when the count moved),
    and nothing is erased, where tqdm would redraw one line with carriage returns."""

    _shown = None  # the count of the last line written

    def display(self, msg=None, pos=None):
        if msg is not None or self.n == self._shown:
            return False  # a clearing (msg '') or a redraw of the same count: nothing new for a log
        self._shown = self.n
        self.fp.write(f"{self}\n")
        self.fp.flush()
        return True

    def clear(self, nolock=False):
        """Nothing to erase: every line written stays."""

    def close(self):
        if not self.disable:
            self.display()  # the final count, if no line showed it yet
        self.leave = False  # its lines are written: no last redraw and newline
        super().close()


def progress_bar(iterable=None, **kwargs) -> tqdm:
    """tqdm(iterable, **kwargs) on standard error: a live bar on a terminal; elsewhere LogLines, a line at most
    every LOG_EVERY_S seconds, its bar in ASCII. tqdm.write prints beside either."""
    if sys.stderr.isatty():
        return tqdm(iterable, file=sys.stderr, **kwargs)
    return LogLines(iterable, file=sys.stderr, mininterval=LOG_EVERY_S, ascii=True, **kwargs)
