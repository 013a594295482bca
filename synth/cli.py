"""The command line: python -m synth writes the synthetic NYU-format dataset.

    python -m synth --out data/synth --train 600 --test 40 --seed 0 --workers 2
"""
from __future__ import annotations

import argparse
import sys

from synth.dataset import DEFAULT_WORKERS, SYNTH_DIR, SYNTH_FRAMES, write_synthetic


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m synth", description="Write the synthetic NYU-format dataset (nyu_data.zip, nyu_test.zip)."
    )
    parser.add_argument("--out", default=SYNTH_DIR, help=f"output folder (default: {SYNTH_DIR})")
    parser.add_argument("--train", type=int, default=SYNTH_FRAMES["train"],
                        help=f"training frames (default: {SYNTH_FRAMES['train']})")
    parser.add_argument("--test", type=int, default=SYNTH_FRAMES["test"],
                        help=f"test frames, written to both zips (default: {SYNTH_FRAMES['test']})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same frames")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"rendering processes (default: {DEFAULT_WORKERS})")
    args = parser.parse_args(argv)
    for flag in ("train", "test"):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag} must be zero or more, got {getattr(args, flag)}")
    if args.workers < 1:
        parser.error(f"--workers must be positive, got {args.workers}")
    return args


def main(args: argparse.Namespace) -> int:
    """Write the dataset as `args` say; returns the exit code (2, with one sentence, for an --out that cannot be
    written)."""
    try:
        out = write_synthetic(args.out, train=args.train, test=args.test, seed=args.seed, workers=args.workers)
    except OSError as err:  # a read-only, full or missing-parent --out
        print(f"error: cannot write {err.filename or args.out} ({err.strerror}); choose another --out", file=sys.stderr)
        return 2
    print(f"wrote {out / 'nyu_data.zip'} ({args.train} train + {args.test} test frames) and {out / 'nyu_test.zip'}")
    return 0
