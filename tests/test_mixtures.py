"""mixtures.py and train.py --data given several times: the PATH:weight=W,units=N syntax, a mixture drawing each
dataset at its weight (deterministic for a seed), each worker reading its own shard of each dataset, and a resumed
mixture reading none of the frames before the resumed position. A mixture run through train.py (logging and
recording its datasets, validating on each one's validation split, resuming inside each dataset's pass to the
uninterrupted weights) is test_finetune.py's fine-tuning run on two datasets."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

import loop
import nyu_layouts as L
import train as train_py
from depth import DepthScale, unpack_target
from layouts import DataError
from mixtures import DataSpec, Mixture, choice_counts, choices, open_mixtures, parse_data_spec

SCALE = DepthScale("metres", 0.1, 10.0)  # the target is the depth itself, so a frame is known by its depth
OPTIONS = dict(input_hw=(16, 16), target_hw=(16, 16), depth_scale=SCALE, augmentation=None)


def constant_depth_frames(first_m, count=8):
    """`count` frames of random colour whose depth is first_m + 0.1 * i metres everywhere (frame i)."""
    rng = np.random.default_rng(int(first_m * 10))
    return [(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), np.full((24, 32), first_m + 0.1 * i, np.float32))
            for i in range(count)]


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory):
    """Own-captures folders: A, depths 1.0-1.7 m in mm; B, depths 4.0-4.7 m at 5000 per metre (TUM's unit)."""
    root = tmp_path_factory.mktemp("mix")
    a = L.write_pairs(root / "a", constant_depth_frames(1.0), "png")
    b = L.write_pairs(root / "b", constant_depth_frames(4.0), "png", units_per_metre=5000)
    return str(a), str(b)


def frame_ids(batches) -> list[int]:
    """Each example's frame, as its depth in decimetres: 10-17 are A's frames, 40-47 B's."""
    return [int(round(10 * float(tf.reduce_mean(SCALE.decode(unpack_target(y)[0][k])))))
            for _, y in batches for k in range(len(y))]


@pytest.mark.parametrize("text, spec", [
    ("data/synth", DataSpec("data/synth")),
    ("../shared/real_captures:weight=0.5,units=1000", DataSpec("../shared/real_captures", 0.5, 1000.0)),
    ("tfds:nyu_depth_v2", DataSpec("tfds:nyu_depth_v2")),  # a ':' that starts no options stays in the path
    ("tfds:nyu_depth_v2:weight=2", DataSpec("tfds:nyu_depth_v2", 2.0)),
    ("/data/a:b/caps:units=5000", DataSpec("/data/a:b/caps", 1.0, 5000.0)),
])
def test_data_values_read_as_path_weight_and_units(text, spec):
    assert parse_data_spec(text) == spec


def test_an_existing_path_is_a_path_whatever_it_holds(tmp_path):
    odd = tmp_path / "caps:weight=2"
    odd.mkdir()
    assert parse_data_spec(str(odd)) == DataSpec(str(odd))


@pytest.mark.parametrize("text, message", [
    ("caps:wieght=2", "--data caps:wieght=2: unknown option 'wieght'; the options are weight=N, units=N"),
    ("caps:weight=-1", "--data caps:weight=-1: must be above 0, got -1"),
    ("caps:units=mm", "--data caps:units=mm: could not convert string to float: 'mm'"),
])
def test_bad_options_are_one_sentence(text, message, capsys):
    with pytest.raises(DataError, match="^" + message):
        parse_data_spec(text)
    with pytest.raises(SystemExit) as stop:
        train_py.parse_args(["--data", "data/synth", "--data", text])
    assert stop.value.code == 2 and f"error: {message}" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_mixture_draws_each_dataset_at_its_weight_deterministically(two_folders):
    """weight=3 against weight=1: 400 frames hold A's about 300 times. The count is binomial (n 400, p 0.75,
    sd sqrt(400 * 0.75 * 0.25) = 8.7), so 300 +- 26 is three standard deviations. Every frame comes with its own
    depth: B's 16-bit PNGs are read at their own 5000 per metre. The same seed draws the same frames."""
    a, b = two_folders
    train, val = open_mixtures([DataSpec(a, 3.0), DataSpec(b, 1.0, 5000.0)])
    assert val is None and train.weights == [0.75, 0.25]  # own-captures folders have one split, 'all'
    drawn = frame_ids(train.dataset(batch_size=4, training=True, seed=0, **OPTIONS).take(100))
    assert set(drawn) == set(range(10, 18)) | set(range(40, 48))
    from_a = sum(i < 40 for i in drawn)
    assert abs(from_a - 300) <= 26, from_a
    again = frame_ids(train.dataset(batch_size=4, training=True, seed=0, **OPTIONS).take(100))
    other = frame_ids(train.dataset(batch_size=4, training=True, seed=1, **OPTIONS).take(100))
    assert drawn == again and drawn != other


def test_each_worker_reads_its_own_shard_of_every_dataset(two_folders):
    """Two workers (loop.shard_select, per-replica batch 2): in each dataset's first pass, the frames worker 0
    reads and those worker 1 reads are 4 and 4 different ones, all 8 together."""
    train, _ = open_mixtures([DataSpec(two_folders[0]), DataSpec(two_folders[1], 1.0, 5000.0)])
    firsts = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker, num_replicas_in_sync=2)
        select = lambda split: loop.shard_select(context, per_replica_batch=2, training=True)  # noqa: E731
        drawn = frame_ids(train.dataset(batch_size=2, training=True, seed=0, select=select, **OPTIONS).take(40))
        firsts.append([[i for i in drawn if (i < 40) == from_a][:4] for from_a in (True, False)])
    for part, frames in enumerate((range(10, 18), range(40, 48))):
        mine, theirs = set(firsts[0][part]), set(firsts[1][part])
        assert len(mine) == len(theirs) == 4 and mine | theirs == set(frames)


def test_a_resumed_mixture_continues_the_draws_and_reads_none_of_the_frames_before_them(two_folders):
    """The draws are a stateless stream: counted without being made, and restarted at any draw. A mixture resumed
    at batch 50 (200 draws: about 150 of A's 8 frames, 50 of B's) gives the uninterrupted run's next batches, and
    reads about the 40 frames it gives plus what the pipelines read ahead within a pass, far from the 240 frames a
    skip of the batches before would decode first."""
    a, b = two_folders
    train, _ = open_mixtures([DataSpec(a, 3.0), DataSpec(b, 1.0, 5000.0)])
    drawn = [int(k) for k in choices(0, train.weights).take(5000)]
    assert list(choice_counts(0, train.weights, 5000)) == list(np.bincount(drawn))
    assert [int(k) for k in choices(0, train.weights, 4500).take(500)] == drawn[4500:]

    uninterrupted = frame_ids(train.dataset(batch_size=4, training=True, seed=0, **OPTIONS).take(60))
    reads = []

    def counted(split):
        return dataclasses.replace(split, reader=lambda key, read=split.reader: reads.append(key) or read(key))

    resumed = Mixture([counted(split) for split in train.splits], train.weights, train.skipped)
    assert frame_ids(resumed.dataset(batch_size=4, training=True, seed=0, start_batch=50, **OPTIONS).take(10)) \
        == uninterrupted[200:]
    assert 40 <= len(reads) <= 40 + 2 * 2 * 8, len(reads)  # each dataset's pipeline reads at most 2 passes ahead
