"""export.py and backends.py with a user's files at stake (issue 23): an export never replaces what it did not write,
a SavedModel --model is scanned for file, print and Python ops before it runs, an int8 export is int8 or nothing,
and every such refusal is one sentence with exit 2 and the files on disk as they were."""
import json
from pathlib import Path

import pytest

import backends
import export
from test_export import INPUT_HW, one_error_line, run_dir  # noqa: F401  run_dir: the shared fixture


def snapshot(*folders: Path) -> dict:
    """{path: bytes (None for a folder)} of everything under folders: what "nothing was deleted or changed"
    compares."""
    return {path: (None if path.is_dir() else path.read_bytes())
            for folder in folders for path in [folder, *sorted(folder.rglob("*"))]}


def export_main(*argv) -> int:
    return export.main(export.parse_args(list(argv)))


def test_export_refuses_to_replace_what_it_did_not_write(run_dir, tmp_path, monkeypatch, capsys):
    """--out naming a folder with other files, the run directory, the working folder (`--out .`), another
    program's .tflite or a sidecar path holding someone's JSON: exit 2, one sentence, every file as it was."""
    model = str(run_dir / "model.keras")
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "notes.txt").write_text("mine")
    (exports / "old.onnx").write_bytes(b"an earlier export the user keeps")
    (tmp_path / "theirs.tflite").write_bytes(b"another program's LiteRT model")
    (tmp_path / "new.onnx.json").write_text('{"a user\'s": "settings"}')
    (tmp_path / "plain_file").write_text("not a folder")
    monkeypatch.chdir(exports)
    before = snapshot(tmp_path, run_dir)
    cases = {("savedmodel", str(exports)): f"--out {exports} is an existing folder that is not a savedmodel export",
             ("savedmodel", "."): "--out . is an existing folder that is not a savedmodel export",
             ("savedmodel", str(run_dir)): f"--out {run_dir} is an existing folder",
             ("savedmodel", str(tmp_path / "plain_file")): "plain_file is an existing file that is not a savedmodel",
             ("tflite", str(tmp_path / "theirs.tflite")): "theirs.tflite is an existing file that is not a tflite",
             ("onnx", str(tmp_path / "new.onnx")): f"{tmp_path / 'new.onnx.json'} exists and is not the description"}
    for (fmt, out), message in cases.items():
        assert export_main("--model", model, "--format", fmt, "--out", out) == 2, out
        err = one_error_line(capsys)
        assert message in err and "choose" in err, err
    assert snapshot(tmp_path, run_dir) == before
    assert not list(tmp_path.rglob(".export-*")) and not list(run_dir.glob(".export-*"))


def test_export_replaces_its_own_export_and_an_empty_folder(run_dir, tmp_path, capsys):
    """A SavedModel export.py wrote (recognised by its sidecar and its entries) is replaced by the next export to
    the same --out, as is an empty folder; a file added inside the SavedModel makes it the user's again."""
    model = str(run_dir / "model.keras")
    out = tmp_path / "sm"
    out.mkdir()  # made ahead, empty
    assert export_main("--model", model, "--format", "savedmodel", "--out", str(out)) == 0
    first = (out / "saved_model.pb").stat().st_mtime_ns
    assert export_main("--model", model, "--format", "savedmodel", "--out", str(out), "--no-flip") == 0
    assert (out / "saved_model.pb").stat().st_mtime_ns != first
    assert json.loads(backends.sidecar_path(out).read_text())["flip"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm", "sm.json"]  # no staging folder left behind
    capsys.readouterr()
    (out / "my_notes.txt").write_text("mine")
    assert export_main("--model", model, "--format", "savedmodel", "--out", str(out)) == 2
    assert "is an existing folder that is not a savedmodel export" in one_error_line(capsys)
    assert (out / "my_notes.txt").read_text() == "mine"

