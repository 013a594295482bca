"""python -m synth: see synth/cli.py."""
import sys

from synth import cli

if __name__ == "__main__":  # the spawn pool's workers import this module too, and must not run it
    sys.exit(cli.main(cli.parse_args()))
