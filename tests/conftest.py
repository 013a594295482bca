"""Shared test set-up: keep runs on the CPU, and import the project from the repository root."""
import os
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL_RGBD = ROOT.parent / "shared" / "real_rgbd"  # real sensor frames (its README); absent outside this machine


def real_rgbd(*parts) -> Path:
    """A path under ../shared/real_rgbd, skipping the calling test (with the reason) when it is absent."""
    import pytest

    path = REAL_RGBD.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the real RGB-D frames live in ../shared/real_rgbd)")
    return path
