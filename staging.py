"""Putting an export in place at --out without losing anything export.py did not write.

export.py builds every file in a staging folder beside --out (`.export-XXXXXXXX`, made by tempfile, marked as
ours by its `export.owner` file naming the process) and then moves the new pair in, sidecar first:

    old model moved aside -> old sidecar removed -> new sidecar renamed in -> new model renamed in

Each step is one rename or unlink on one file system, so a kill between any two leaves either the old pair, the
new pair, or a sidecar without its model (which predict.py reports as "no model file" and the next export
replaces): never a model beside another model's sidecar. What is replaced must be an export export.py wrote:
`check_replaceable` refuses anything else with one sentence before any work is done.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

from backends import SAVED_MODEL_FILE, read_info, sidecar_path

STAGING_PREFIX = ".export-"
OWNER_FILE = "export.owner"  # in every staging folder: {"pid", "host"} of the export.py that made it
# What Keras's model.export puts in a SavedModel folder; a folder holding anything else is not only our export.
SAVED_MODEL_ENTRIES = frozenset({SAVED_MODEL_FILE, "variables", "assets", "fingerprint.pb"})


def _is_our_sidecar(sidecar: Path, fmt: str) -> bool:
    """Whether `sidecar` is a regular file holding an ExportInfo of format fmt (backends.read_info reads it)."""
    if sidecar.is_symlink() or not sidecar.is_file():
        return False
    try:
        return read_info(Path(str(sidecar)[:-len(".json")])).format == fmt
    except ValueError:
        return False


def _is_our_export(out: Path, fmt: str) -> bool:
    """Whether `out` is what export.py writes for fmt, with its sidecar: a .tflite/.onnx file, or a SavedModel
    folder holding only model.export's entries."""
    if out.is_symlink() or not _is_our_sidecar(sidecar_path(out), fmt):
        return False
    if fmt == "savedmodel":
        return (out.is_dir() and (out / SAVED_MODEL_FILE).is_file()
                and {entry.name for entry in out.iterdir()} <= SAVED_MODEL_ENTRIES)
    return out.is_file()


def check_replaceable(out: Path, fmt: str) -> None:
    """Nothing at `out` or its sidecar that writing a `fmt` export there would lose, else ValueError (one
    sentence naming the path and the fix).

    Replaceable: nothing, an empty folder (a SavedModel's --out made ahead), or an export of `fmt` export.py
    wrote (recognised by its sidecar, and for a SavedModel by holding only SAVED_MODEL_ENTRIES); a lone sidecar
    of ours (a killed export's) is replaced too. Refused: any other file or folder, such as `--out .`, the run
    directory, a folder holding other files, another program's .tflite, or a symlink.
    """
    sidecar = sidecar_path(out)
    if (sidecar.exists() or sidecar.is_symlink()) and not _is_our_sidecar(sidecar, fmt):
        raise ValueError(f"{sidecar} exists and is not the description of a {fmt} export export.py wrote, and "
                         f"exporting to --out {out} would replace it; move it away or choose another --out")
    if not (out.exists() or out.is_symlink()):
        return
    empty_folder = out.name not in ("", "..") and out.is_dir() and not out.is_symlink() and not any(out.iterdir())
    if not (empty_folder or _is_our_export(out, fmt)):
        kind = "folder" if out.is_dir() else "file"
        raise ValueError(f"--out {out} is an existing {kind} that is not a {fmt} export export.py wrote, and "
                         "exporting would replace it and everything in it; choose a new --out (e.g. "
                         f"{out.resolve().name or 'export'}_{fmt}) or move it away first")


def staging_folder(parent: Path) -> Path:
    """A new folder `.export-XXXXXXXX` in parent (on --out's file system, so moves out of it are renames),
    marked with OWNER_FILE as this process's. The caller removes it (shutil.rmtree) when done."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=STAGING_PREFIX))
    (folder / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    return folder


def publish(staged: Path, sidecar_text: str, out: Path, work: Path) -> None:
    """Move the staged export (a file or folder in `work`) to `out` with `sidecar_text` as its sidecar, in the
    module docstring's order; what was at out ends in `work`, which the caller removes."""
    pending = work / "sidecar.json"
    pending.write_text(sidecar_text)
    if out.exists() or out.is_symlink():
        out.replace(work / "replaced")
    sidecar_path(out).unlink(missing_ok=True)
    pending.replace(sidecar_path(out))
    staged.replace(out)



def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_staging(parent: Path) -> list[Path]:
    """Remove the staging folders in parent that a killed export.py on this machine left (OWNER_FILE names a
    process that no longer runs); returns them. Folders without a readable OWNER_FILE are not ours and stay, as
    do those of exports still running and of other machines (a shared file system)."""
    removed = []
    for folder in sorted(parent.glob(f"{STAGING_PREFIX}*")):
        try:
            owner = json.loads((folder / OWNER_FILE).read_text())
            stale = owner["host"] == socket.gethostname() and not _pid_alive(int(owner["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if stale and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
