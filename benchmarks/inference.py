"""Inference speed (ms per photograph), and the distance to the limit: the models' counted FLOPs against the
machine's measured float32 peak."""
from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import data
from depth import DepthScale
from layouts import open_source
from predict import predict_depth_m

from .common import PLAIN_PREDICT, Sizes, interleaved, ratio_summary, summary

SAME_DEPTH_M = 1e-4  # a path is correct when its depth maps are within this many metres of its reference's
PROJECT = "predict.py"
XLA_PREDICT = f"{PLAIN_PREDICT}, XLA"

# What one call of each path computes, and so what its row times (every path starts from uint8 photographs).
PATH_TIMES = {
    PLAIN_PREDICT: "data.resize_rgb to the network input, model.predict, DepthScale.decode: depth in metres at "
                   "the network's output size (not resized back to the photo's, so a lower bound on a user's path)",
    XLA_PREDICT: f"the same as {PLAIN_PREDICT}, on a copy of the model compiled with jit_compile=True",
    PROJECT: "predict.py's predict_depth_m(flip=False): depth in metres at the photo's own size",
}
# Each path's depth maps are checked against its reference's at batch 1. The two families are not compared with
# each other: their maps differ in size by design (PATH_TIMES).
REFERENCE = {PLAIN_PREDICT: PLAIN_PREDICT, XLA_PREDICT: PLAIN_PREDICT, PROJECT: PROJECT}


def photographs(dataset_dir: Path, sizes: Sizes) -> np.ndarray:
    """The set's test frames as uint8 photographs [infer_images, *infer_hw, 3]."""
    photos = np.stack([frame["rgb"].numpy() for frame in data.frames(open_source(dataset_dir).split("test"))])
    resized = tf.image.resize(photos[:sizes.infer_images], sizes.infer_hw, antialias=True)
    return tf.saturate_cast(tf.round(resized), tf.uint8).numpy()


def keras_depth_m(net: keras.Model, photos: np.ndarray, depth_scale: DepthScale) -> np.ndarray:
    """PATH_TIMES[PLAIN_PREDICT]: uint8 [B, H, W, 3] -> depth float32 [B, h', w'] metres at the network's output size."""
    x = data.resize_rgb(photos, net.input_shape[1:3])
    return depth_scale.decode(net.predict(x, batch_size=len(photos), verbose=0))[..., 0].numpy()


def in_batches(predict, images: np.ndarray, batch_size: int) -> np.ndarray:
    """predict(chunk) over images in chunks of batch_size, concatenated."""
    return np.concatenate([predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def xla_clone(net: keras.Model) -> keras.Model:
    """A copy of net whose model.predict runs XLA-compiled."""
    clone = keras.models.clone_model(net)
    clone.set_weights(net.get_weights())
    clone.compile(jit_compile=True)
    return clone


def measure_inference(net: keras.Model, images: np.ndarray, sizes: Sizes, depth_scale: DepthScale) -> dict:
    """ms per photograph of each path of PATH_TIMES at each batch size; the headline speedup is the plain
    model.predict at batch 1 over the fastest correct path at its best batch size."""
    xla = xla_clone(net)
    paths = {
        PLAIN_PREDICT: lambda x: keras_depth_m(net, x, depth_scale),
        XLA_PREDICT: lambda x: keras_depth_m(xla, x, depth_scale),
        PROJECT: lambda x: predict_depth_m(net, x, depth_scale, flip=False),
    }
    runs_of = {(path, b): (lambda predict=predict, b=b: in_batches(predict, images, b)) for path, predict in paths.items()
               for b in sizes.infer_batches}
    references = {path: runs_of[path, 1]() for path in set(REFERENCE.values())}
    # This first pass of every path (tracing, XLA compilation) is also the warm-up.
    max_diff = {key: float(np.max(np.abs(run() - references[REFERENCE[key[0]]]))) for key, run in runs_of.items()}

    def ms_per_image(run):
        start = time.perf_counter()
        run()
        return 1000.0 * (time.perf_counter() - start) / len(images)

    runs = interleaved({key: lambda run=run: ms_per_image(run) for key, run in runs_of.items()}, sizes.repeats, warmups=0)
    label = {key: f"{key[0]} @ batch {key[1]}" for key in runs}
    correct = {key: max_diff[key] <= SAME_DEPTH_M for key in runs}
    fastest = min((key for key in runs if correct[key]), key=lambda key: np.median(runs[key]))
    plain = runs[PLAIN_PREDICT, 1]
    return {
        "model": net.name,
        "photo_hw": list(images.shape[1:3]), "input_hw": list(net.input_shape[1:3]),
        "paths": PATH_TIMES,
        "ms_per_image": {label[key]: summary(values, "ms/image") for key, values in runs.items()},
        "max_abs_diff_m": {label[key]: max_diff[key] for key in runs},
        "correct": {label[key]: correct[key] for key in runs},
        "speedup_same_batch": {label[key]: ratio_summary(runs[PLAIN_PREDICT, key[1]], values)
                               for key, values in runs.items()},
        "fastest": label[fastest],
        # the plain path one photograph at a time against the fastest correct path at its best batch size
        "speedup": ratio_summary(plain, runs[fastest]),
        "fastest_images_per_s": summary([1000.0 / v for v in runs[fastest]], "images/s"),
    }


# ---------------------------------------------------------------------------
# Distance to the limit: counted FLOPs against the measured peak
# ---------------------------------------------------------------------------

def forward_flops(net: keras.Model) -> dict:
    """Floating-point operations of one forward pass of one image, counted by TensorFlow's profiler
    (float_operation) on the traced graph at batch 1; conv_flops: 2 x the multiply-accumulates of every
    convolution and dense layer, counted from the layers' shapes, as a cross-check."""
    forward = tf.function(lambda x: net(x, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec([1, *net.input_shape[1:]], tf.float32)).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    counted = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    conv = 0
    for layer in net.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            # Each output position costs one multiply-accumulate per kernel weight, whatever the layer:
            # [kh, kw, in, out], depthwise [kh, kw, in, multiplier], dense [in, out].
            positions = int(np.prod(layer.output.shape[1:-1]))
            conv += 2 * positions * layer.get_weights()[0].size
    return {"flops_per_image": float(counted), "conv_flops_per_image": float(conv),
            "counted_by": "tf.compat.v1.profiler float_operation on the forward tf.function's graph, batch 1"}


def measure_peak(sizes: Sizes) -> dict:
    """The machine's float32 FLOP/s on a large matmul and a large 3x3 convolution in TensorFlow."""
    n = sizes.matmul_n
    b, h, w, c = sizes.conv_shape
    a, m = tf.random.normal([n, n]), tf.random.normal([n, n])
    x, k = tf.random.normal([b, h, w, c]), tf.random.normal([3, 3, c, c])
    work = {
        f"matmul {n}x{n}": (tf.function(lambda: tf.reduce_sum(tf.matmul(a, m))), 2.0 * n**3),
        f"conv3x3 {b}x{h}x{w}x{c} -> {c}": (tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, k, 1, "SAME"))),
                                            2.0 * b * h * w * c * c * 9),
    }

    def gflop_per_s(op, flops):
        start = time.perf_counter()
        op().numpy()
        return flops / (time.perf_counter() - start) / 1e9

    runs = interleaved({name: lambda op=op, flops=flops: gflop_per_s(op, flops) for name, (op, flops) in work.items()},
                       sizes.repeats)
    figures = {name: summary(values, "GFLOP/s") for name, values in runs.items()}
    best = max(figures, key=lambda name: figures[name]["median"])
    return {"gflop_per_s": figures, "peak": best, "peak_gflop_per_s": figures[best]["median"]}
