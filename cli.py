"""What every command-line script shares: a user's mistake reported as one line and exit code 2.

A user error (a missing file, a wrong flag value, a dataset that cannot train) is one line on standard error,
`error: <what and which file>; <the fix>`, and exit code 2 (argparse's own code for a usage error); a traceback
is for a bug only (CONTRIBUTING.md, "add a command-line script")."""
from __future__ import annotations

import re
import sys

USER_ERROR_EXIT = 2  # argparse's exit code for a usage error


def user_error(message: str) -> int:
    """Print `error: message` to standard error and return the exit code a script's main returns for it (2)."""
    print(f"error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT


def first_line(err: BaseException) -> str:
    """An error's first line, without TensorFlow's "{{function_node ...}}" prefix (a tf.errors.OpError's
    `message`; str(err) for any other exception; repr(err) when that is empty)."""
    tf = sys.modules.get("tensorflow")  # an OpError exists only once TensorFlow is loaded; cli.py loads nothing heavy
    message = err.message if tf is not None and isinstance(err, tf.errors.OpError) else str(err)
    message = (message or str(err)).strip()
    return re.sub(r"^\{\{[^}]*\}\}\s*", "", message.splitlines()[0]) if message else repr(err)
