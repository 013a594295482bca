"""Fine-tuning: train.py --init-from MODEL starts a run from every weight of a .keras model of this project (a
run's model.keras or checkpoint, DenseDepth's imported model). The model fixes the flags that describe it
(model.architecture_of); the run records them in args.json, and refuses a flag given that contradicts them.
"""
from __future__ import annotations

import argparse
import sys

import keras

import model as models
import rundir


def init_net(path, synchronized_bn: bool = False) -> keras.Model:
    """--init-from: the model at `path` (a .keras file of this project) with its weights, uncompiled, rebuilt
    layer by layer so that the global dtype policy (--mixed-precision) and synchronized_bn apply as in build_net.
    ValueError naming the file for a file that is not a model, or a model model.py did not build."""
    try:
        source = models.load_model(path)
    except ValueError as err:
        raise ValueError(f"--init-from: {err}") from None
    try:
        models.architecture_of(source)
    except ValueError as err:
        raise ValueError(f"--init-from {path}: {err}") from None

    def rebuild(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):
            config.pop("dtype", None)  # saved as the policy it was trained under; take today's
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = synchronized_bn
        return layer.__class__.from_config(config)

    net = keras.models.clone_model(source, clone_function=rebuild)
    net.set_weights(source.get_weights())
    return net


def flags_of(net: keras.Model) -> dict:
    """The flags whose values a model fixes (models.architecture_of), as train.py names them."""
    built = models.architecture_of(net)
    scale = built["depth_scale"]
    flags = {"model": built["kind"], "input_size": list(built["input_hw"]), "depth_mode": scale.mode,
             "min_depth_m": scale.min_depth_m, "max_depth_m": scale.max_depth_m}
    return {**flags, **{k: built[k] for k in ("encoder", "decoder_width", "base_filters") if k in built}}


def adopt_init_model(args, net: keras.Model, given) -> argparse.Namespace:
    """`args` with every flag the --init-from model `net` fixes set from it (so args.json records them), and no
    encoder weights; ValueError when a flag in `given` (those on the command line) contradicts the model."""
    fixed = flags_of(net)
    for name, value in fixed.items():
        if name in given and getattr(args, name) != value:
            raise ValueError(f"{rundir.flag(name)} {_shown(getattr(args, name))} contradicts --init-from "
                             f"{args.init_from}, whose {rundir.flag(name)[2:]} is {_shown(value)}: drop "
                             f"{rundir.flag(name)}, the model fixes it")
    if "encoder_weights" in given:  # e.g. from a recipe file the pretraining run used: no contradiction, no use
        print(f"--encoder-weights {args.encoder_weights} is not used: every weight comes from {args.init_from}",
              file=sys.stderr)
    if args.freeze_encoder_epochs and fixed["model"] != "transfer":
        raise ValueError(f"--freeze-encoder-epochs needs a transfer model, and --init-from {args.init_from} is a "
                         f"{fixed['model']}")
    # 'none': this run loads no encoder weights of its own (they come from the model), and args.json stays a
    # command line --resume's check reads back as written
    return argparse.Namespace(**{**vars(args), **fixed, "encoder_weights": "none"})


def _shown(value) -> str:
    """A flag's value as it is typed: 32 48, 0.5, unet."""
    if isinstance(value, list):
        return " ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
