"""Speed and memory of the input pipeline, training and inference, each against the baseline a user would
otherwise run, how close they come to the machine's measured peak, and the quality a CPU reaches per minute.

    python -m benchmarks [--quick] [--skip-quality] [--json benchmarks/results.json]

Absolute times drift on shared machines, so every figure is measured in this one run side by side with its
baseline: after a warm-up, the contenders take turns (A B A B ...) and each ratio is formed per repeat, so load
from other processes falls on both. Each figure is the median over the repeats, with its min and max.
The JSON's top-level numbers are those medians; the Markdown table printed at the end is docs/benchmarks.md's.

Modules, one concern each: common (sizes, taking turns, summaries), baseline (the DenseDepth-style loader),
pipeline (input throughput, stage profile, memory), training, inference (and the FLOP count and peak),
quality (train.py and evaluate.py runs), report (the machine, headline numbers, goals, Markdown),
__main__ (the command line). The package imports the core's public functions; the core never imports it.
Run on its own: deployment (export.py's backends, speed and accuracy; python -m benchmarks.deployment).
"""
