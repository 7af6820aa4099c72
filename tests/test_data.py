"""Data sources, the hold-out split and the input pipelines."""

import csv
import dataclasses
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from tfanom.data import holdout as holdout_lib
from tfanom.data import prepared
from tfanom.data.holdout import ANOMALY_LABEL, make_holdout, relabel, resolve_holdout
from tfanom.data.pipeline import InputPipeline, random_crop_flip
from tfanom.data.arrays import LabelledImages, Source, value_counts
from tfanom.data.decoding import (IMAGE_EXTENSIONS, ORIENTATION_TAG, decode_files, decode_image,
                                  find_image_files, input_root, list_image_folder)
from tfanom.data.sources import load_source
from tfanom.errors import UsageError
from tfanom.inference.image_files import ScoreConfig, score_files
from tfanom.inference.restore import load_run
from tfanom.workdir import RESULTS_FILE

# Synthetic data whose every image is filled with (its id + 1), so an example stays identifiable
# through relabelling, splitting, batching and even zero-padded crops (id = max pixel - 1).
CLASS_NAMES = ('ant', 'bee', 'cat', 'dog')
TRAIN_PER_CLASS = (30, 45, 25, 50)
TEST_PER_CLASS = (6, 7, 8, 9)


def _labelled(counts, first_id, shape=(8, 8, 1)):
  labels = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
  # Interleave the classes so that nothing relies on examples being grouped by class.
  labels = labels[np.random.default_rng(first_id).permutation(len(labels))]
  ids = first_id + np.arange(len(labels))
  images = np.broadcast_to((ids + 1).astype(np.uint8)[:, None, None, None],
                           (len(ids), *shape)).copy()
  return LabelledImages(images, labels)


def image_ids(images):
  return images.reshape(len(images), -1).max(axis=1).astype(int) - 1


@pytest.fixture(scope='module')
def source():
  train = _labelled(TRAIN_PER_CLASS, 0)
  test = _labelled(TEST_PER_CLASS, len(train))
  assert len(train) + len(test) < 255
  return Source('synthetic', CLASS_NAMES, train, test)


# Hold-out split ------------------------------------------------------------------------------


def test_relabel_moves_classes_above_the_holdout_down():
  labels = np.array([0, 1, 2, 3, 4, 2, 4, 0])
  np.testing.assert_array_equal(relabel(labels, 2), [0, 1, -1, 2, 3, -1, 3, 0])
  np.testing.assert_array_equal(relabel(labels, 0), [-1, 0, 1, 2, 3, 1, 3, -1])
  np.testing.assert_array_equal(relabel(labels, 4), [0, 1, 2, 3, -1, 2, -1, 0])
  assert ANOMALY_LABEL == -1


@pytest.mark.parametrize('holdout', [2, '2', 'cat'])
def test_holdout_split(source, holdout):
  split = make_holdout(source, holdout)
  assert (split.holdout_index, split.holdout_name) == (2, 'cat')
  assert split.known_class_names == ('ant', 'bee', 'dog')
  assert split.num_classes == 3
  # Training data: every example of the other classes, none of the held-out one, relabelled.
  original = dict(zip(image_ids(source.train.images), source.train.labels))
  train_ids = image_ids(split.train.images)
  assert sorted(train_ids) == sorted(i for i, label in original.items() if label != 2)
  np.testing.assert_array_equal(split.train.labels,
                                relabel(np.array([original[i] for i in train_ids]), 2))
  assert set(split.train.labels) == {0, 1, 2}
  # Evaluation data: the whole test set, in order, with the held-out class as anomalies.
  np.testing.assert_array_equal(split.evaluation.images, source.test.images)
  np.testing.assert_array_equal(split.evaluation.labels, relabel(source.test.labels, 2))
  np.testing.assert_array_equal(split.is_anomaly, source.test.labels == 2)
  assert split.is_anomaly.sum() == TEST_PER_CLASS[2]


def test_holdout_statistics_come_from_training_images(source):
  split = make_holdout(source, 'bee')
  pixels = split.train.images.astype(np.float64) / 255.0
  np.testing.assert_allclose(split.mean, pixels.mean(axis=(0, 1, 2)), rtol=1e-6)
  np.testing.assert_allclose(split.std, pixels.std(axis=(0, 1, 2)), rtol=1e-5)


def test_value_counts_count_each_value_per_label_and_channel():
  rng = np.random.default_rng(3)
  images = rng.integers(0, 256, (23, 5, 4, 3), dtype=np.uint8)
  labels = rng.integers(0, 4, len(images))
  expected = np.zeros((5, 3, 256), np.int64)  # a label (4) without images counts nothing
  for image, label in zip(images, labels):
    for channel in range(3):
      np.add.at(expected[label, channel], image[..., channel].reshape(-1), 1)
  # Chunks of one image, of several, and one chunk for everything.
  for pixels_per_chunk in (1, 50, 10**6):
    np.testing.assert_array_equal(value_counts(images, labels, 5, pixels_per_chunk), expected)
  np.testing.assert_array_equal(value_counts(images, pixels_per_chunk=50)[0], expected.sum(0))


@pytest.mark.parametrize('holdout', ['4', '42', '-1', 'zebra', '2.0', 'Cat'])
def test_bad_holdout_raises_usage_error(source, holdout):
  with pytest.raises(UsageError, match=f'--holdout={holdout}'):
    make_holdout(source, holdout)


def test_resolve_holdout_names_and_indices():
  assert resolve_holdout('3', [str(d) for d in range(10)]) == 3
  assert resolve_holdout(0, list(CLASS_NAMES)) == 0
  assert resolve_holdout('dog', list(CLASS_NAMES)) == 3


@pytest.mark.parametrize('seed', [0, 7])
def test_validation_split(source, seed):
  assert holdout_lib.VALIDATION_FRACTION == 0.2  # the paper's split
  split = make_holdout(source, 'cat', validation=True, seed=seed)
  train_labels = dict(zip(image_ids(source.train.images), source.train.labels))
  validation_ids = image_ids(split.evaluation.images)
  train_ids = image_ids(split.train.images)
  # Only training data; disjoint from what the classifier trains on.
  assert set(validation_ids) <= set(train_labels)
  assert not set(validation_ids) & set(train_ids)
  # Stratified 20% of every class, the held-out one included (as anomalies).
  validation_labels = np.array([train_labels[i] for i in validation_ids])
  for label, count in enumerate(TRAIN_PER_CLASS):
    expected = int(round(holdout_lib.VALIDATION_FRACTION * count))
    assert (validation_labels == label).sum() == expected
  np.testing.assert_array_equal(split.evaluation.labels, relabel(validation_labels, 2))
  assert split.is_anomaly.sum() == round(holdout_lib.VALIDATION_FRACTION * TRAIN_PER_CLASS[2]) > 0
  # Every training example of a known class is in exactly one of the two sets.
  known = {i for i, label in train_labels.items() if label != 2}
  assert set(train_ids) == known - set(validation_ids)
  assert 2 not in {train_labels[i] for i in train_ids}
  # Seeded: the same seed picks the same examples, another seed others.
  again = make_holdout(source, 'cat', validation=True, seed=seed)
  np.testing.assert_array_equal(image_ids(again.evaluation.images), validation_ids)
  other = make_holdout(source, 'cat', validation=True, seed=seed + 1)
  assert set(image_ids(other.evaluation.images)) != set(validation_ids)


# digits --------------------------------------------------------------------------------------


def test_digits_source(digits):
  assert digits.name == 'digits'
  assert digits.class_names == tuple(str(d) for d in range(10))
  for part in (digits.train, digits.test):
    assert part.images.dtype == np.uint8 and part.images.shape[1:] == (32, 32, 1)
    assert part.labels.dtype == np.int64
  assert len(digits.train) + len(digits.test) == 1797
  assert digits.train.images.max() > 200  # rescaled to the full uint8 range
  # Stratified: a quarter of every class is test data.
  all_labels = np.concatenate([digits.train.labels, digits.test.labels])
  for label in range(10):
    assert (digits.test.labels == label).sum() == round(0.25 * (all_labels == label).sum())


def test_digits_split_is_fixed_whatever_the_seed(digits):
  again = load_source('digits')
  np.testing.assert_array_equal(again.test.images, digits.test.images)
  np.testing.assert_array_equal(again.train.labels, digits.train.labels)
  seeded = [make_holdout(digits, 3, seed=seed) for seed in (0, 5)]
  np.testing.assert_array_equal(seeded[0].evaluation.images, seeded[1].evaluation.images)
  np.testing.assert_array_equal(seeded[0].train.images, seeded[1].train.images)


# Pipelines -----------------------------------------------------------------------------------


def batches(dataset):
  return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


@pytest.fixture(scope='module')
def split(source):
  return make_holdout(source, 'cat')


@pytest.mark.parametrize('augment', ['crop_flip', 'none'])
def test_training_epochs_are_deterministic_and_full(split, augment):
  pipeline = InputPipeline(split, batch_size=16, aux_batch_size=4, augment=augment, seed=3)
  epoch = batches(pipeline.train_dataset(1))
  assert len(epoch) == pipeline.steps_per_epoch == len(split.train) // 16
  for batch in epoch:
    assert batch['image'].shape == (16, 8, 8, 1) and batch['image'].dtype == np.uint8
    assert batch['label'].shape == (16,)
    assert batch['aux_image'].shape == (4, 8, 8, 1)
  # A permutation: no example twice in an epoch, each with its own (relabelled) label.
  ids = np.concatenate([image_ids(b['image']) for b in epoch])
  assert len(set(ids)) == len(ids)
  label_of = dict(zip(image_ids(split.train.images), split.train.labels))
  np.testing.assert_array_equal(np.concatenate([b['label'] for b in epoch]),
                                [label_of[i] for i in ids])
  # The same (seed, epoch) gives the same batches, from a fresh pipeline too.
  assert_same_batches(epoch, batches(pipeline.train_dataset(1)))
  rebuilt = InputPipeline(split, batch_size=16, aux_batch_size=4, augment=augment, seed=3)
  assert_same_batches(epoch, batches(rebuilt.train_dataset(1)))
  # Other epochs and other seeds are shuffled differently.
  other_epoch = np.concatenate([b['label'] for b in batches(pipeline.train_dataset(2))])
  assert not np.array_equal(other_epoch, np.concatenate([b['label'] for b in epoch]))
  other_seed = InputPipeline(split, batch_size=16, aux_batch_size=4, augment=augment, seed=4)
  assert not np.array_equal(
      np.concatenate([b['label'] for b in batches(other_seed.train_dataset(1))]),
      np.concatenate([b['label'] for b in epoch]))


def test_start_step_resumes_mid_epoch(split):
  pipeline = InputPipeline(split, batch_size=16, aux_batch_size=4, augment='crop_flip', seed=1)
  whole = batches(pipeline.train_dataset(2))
  assert_same_batches(whole[3:], batches(pipeline.train_dataset(2, start_step=3)))


def input_contexts(pipelines, replicas):
  return [tf.distribute.InputContext(pipelines, pipeline, replicas)
          for pipeline in range(pipelines)]


@pytest.mark.parametrize('pipelines, replicas', [(1, 2), (2, 4)])
@pytest.mark.parametrize('augment', ['crop_flip', 'center_mask', 'crop_altflip'])
def test_each_input_pipeline_reads_its_replicas_share_of_the_same_batches(split, pipelines,
                                                                          replicas, augment):
  pipeline = InputPipeline(split, batch_size=16, aux_batch_size=4, augment=augment, seed=2)
  whole = batches(pipeline.train_dataset(1, start_step=1))
  parts = [batches(pipeline.train_dataset(1, 1, context))
           for context in input_contexts(pipelines, replicas)]
  local = replicas // pipelines
  for step, batch in enumerate(whole):
    for key, value in batch.items():
      shares = [part[step * local + r][key] for part in parts for r in range(local)]
      np.testing.assert_array_equal(np.concatenate(shares), value)


def test_eval_shares_are_padded_and_gather_to_every_example(split):
  pipeline = InputPipeline(split, batch_size=16)
  parts = [batches(pipeline.eval_dataset(7, context)) for context in input_contexts(2, 4)]
  assert {len(p['label']) for part in parts for p in part} == {2}  # ceil(7 / 4): static shapes
  gathered = np.concatenate([p['label'] for step in zip(*[zip(*[iter(part)] * 2)
                                                          for part in parts])
                             for pair in step for p in pair])
  np.testing.assert_array_equal(gathered[:len(split.evaluation)], split.evaluation.labels)
  assert len(gathered) - len(split.evaluation) < 8


class RowCounter:
  """An image array that records the rows the pipeline reads from it."""

  def __init__(self, images):
    self.images, self.shape, self.dtype, self.ndim = images, images.shape, images.dtype, images.ndim
    self.reads = []

  def __len__(self):
    return len(self.images)

  def __getitem__(self, rows):
    self.reads.append(np.array(rows).reshape(-1))
    return self.images[rows]

  def rows_read(self):
    return np.sort(np.concatenate(self.reads)) if self.reads else np.zeros([0], int)


def counted(split):
  """`split` whose training and evaluation images count their reads."""
  return dataclasses.replace(
      split, train=LabelledImages(RowCounter(split.train.images), split.train.labels),
      evaluation=LabelledImages(RowCounter(split.evaluation.images), split.evaluation.labels))


@pytest.mark.parametrize('replicas', [2, 4])
def test_each_of_two_workers_reads_only_its_replicas_rows_of_each_training_batch(split,
                                                                                   replicas):
  # crop_flip keeps each image's id (its largest pixel), so the rows of a batch can be named.
  settings = dict(batch_size=16, aux_batch_size=4, augment='crop_flip', seed=5)
  whole = batches(InputPipeline(split, **settings).train_dataset(2))
  row_of = {image_id: row for row, image_id in enumerate(image_ids(split.train.images))}
  local = replicas // 2
  workers = []
  for context in input_contexts(2, replicas):
    worker_split = counted(split)
    workers.append((worker_split.train.images,
                    batches(InputPipeline(worker_split, **settings).train_dataset(2, 0, context))))
  for index, (counter, part) in enumerate(workers):
    expected = []
    for batch in whole:
      for key, size in (('image', 16), ('aux_image', 4)):
        share = size // replicas
        mine = batch[key][index * local * share:(index + 1) * local * share]
        expected += [row_of[image_id] for image_id in image_ids(mine)]
    # Exactly its replicas' rows of each global batch, each read once: half of every batch.
    np.testing.assert_array_equal(counter.rows_read(), np.sort(expected))
    assert len(expected) == len(whole) * (16 + 4) // 2
  # Together, bit-identical to the one pipeline's global batches.
  for step, batch in enumerate(whole):
    for key, value in batch.items():
      shares = [part[step * local + r][key] for _, part in workers for r in range(local)]
      np.testing.assert_array_equal(np.concatenate(shares), value)


@pytest.mark.parametrize('replicas', [2, 4])
def test_each_of_two_workers_reads_only_its_rows_of_each_evaluation_batch(split, replicas):
  num_eval, batch_size = len(split.evaluation), 7
  share = -(-batch_size // replicas)
  steps = -(-num_eval // (share * replicas))
  assert steps * share * replicas > num_eval  # the last global batch is padded
  local = replicas // 2
  workers = []
  for context in input_contexts(2, replicas):
    worker_split = counted(split)
    workers.append((worker_split.evaluation.images,
                    batches(InputPipeline(worker_split, batch_size=16).eval_dataset(batch_size,
                                                                                     context))))
  for index, (counter, part) in enumerate(workers):
    assert {len(element['label']) for element in part} == {share}  # static shapes
    # Row r of global batch s is s * share * replicas + r; the padding repeats the last example.
    rows = [step * share * replicas + r for step in range(steps)
            for r in range(index * local * share, (index + 1) * local * share)]
    np.testing.assert_array_equal(counter.rows_read(), np.sort(np.minimum(rows, num_eval - 1)))
  gathered = {key: np.concatenate([part[step * local + r][key] for step in range(steps)
                                   for _, part in workers for r in range(local)])
              for key in ('image', 'label')}
  assert len(gathered['label']) == steps * share * replicas
  # Dropping the padded rows after gathering leaves every example once, in order.
  np.testing.assert_array_equal(gathered['image'][:num_eval], split.evaluation.images)
  np.testing.assert_array_equal(gathered['label'][:num_eval], split.evaluation.labels)
  assert len(set(image_ids(gathered['image'][:num_eval]))) == num_eval
  one = batches(InputPipeline(split, batch_size=16).eval_dataset(batch_size))
  np.testing.assert_array_equal(np.concatenate([b['image'] for b in one]),
                                gathered['image'][:num_eval])


def test_classification_only_pipeline_has_no_aux_images(split):
  pipeline = InputPipeline(split, batch_size=16, augment='crop', seed=0)
  assert all(set(b) == {'image', 'label'} for b in batches(pipeline.train_dataset(0)))


def test_eval_dataset_keeps_every_example_in_order(split):
  pipeline = InputPipeline(split, batch_size=16)
  parts = batches(pipeline.eval_dataset(batch_size=7))
  assert len(split.evaluation) % 7  # the last batch is partial and must still be there
  assert [len(p['label']) for p in parts][-1] == len(split.evaluation) % 7
  np.testing.assert_array_equal(np.concatenate([p['image'] for p in parts]),
                                split.evaluation.images)
  np.testing.assert_array_equal(np.concatenate([p['label'] for p in parts]),
                                split.evaluation.labels)


def test_pipeline_refuses_bad_settings(split):
  with pytest.raises(UsageError, match='--augment=bogus'):
    InputPipeline(split, batch_size=16, augment='bogus')
  with pytest.raises(UsageError, match='--batch_size=1000'):
    InputPipeline(split, batch_size=1000)


def test_pipeline_shares_the_split_arrays(source):
  split = make_holdout(source, 'cat')  # its own: the module's split must stay intact
  pipeline = InputPipeline(split, batch_size=16, augment='none')
  split.train.images[:] = 0
  assert not any(batch['image'].any() for batch in batches(pipeline.train_dataset(0)))


def test_hold_out_split_and_pipeline_copy_the_training_set_once(split):
  # The benchmark's measurement (benchmarks.suite.memory_growth) made in this process rather than
  # in a fresh one, whose TensorFlow start-up cost 8 s of CPU: tracemalloc counts NumPy's own
  # allocations, so the split's copy is measured exactly (0.902 of the set: 9 of 10 classes kept);
  # what the pipeline adds is TensorFlow's memory, outside tracemalloc, so it is RSS growth, at a
  # size where a copy of the set (100 MiB) dwarfs the noise (0.07-0.08 measured).
  import gc  # pylint: disable=g-import-not-at-top
  import tracemalloc  # pylint: disable=g-import-not-at-top
  import psutil  # pylint: disable=g-import-not-at-top
  per_class = 100 * 2**20 // (32 * 32 * 3) // 10
  train = _labelled([per_class] * 10, 0, shape=(32, 32, 3))  # every page written: resident
  source = Source('synthetic', tuple(map(str, range(10))), train,
                  _labelled([10] * 10, 0, shape=(32, 32, 3)))
  # TensorFlow's runtime (thread pools, tf.data) starts lazily: start it, on the module's small
  # split, before the baseline.
  batches(InputPipeline(split, batch_size=16, aux_batch_size=4).train_dataset(0))
  gc.collect()
  tracemalloc.start()
  try:
    held_out = make_holdout(source, 0)
    split_growth = tracemalloc.get_traced_memory()[0] / train.images.nbytes
  finally:
    tracemalloc.stop()
  rss = lambda: psutil.Process().memory_info().rss  # noqa: E731
  after_split = rss()
  pipeline = InputPipeline(held_out, 128, 32, 'crop_flip')
  for _ in pipeline.train_dataset(0).take(20):
    pass
  assert split_growth == pytest.approx(0.9, abs=0.05)
  assert (rss() - after_split) / train.images.nbytes < 0.3


def random_images(shape=(32, 9, 11, 2), seed=0):
  # Values 1..255 in random order: a crop position is identified by its contents.
  return np.random.default_rng(seed).integers(1, 256, shape, dtype=np.uint8)


def crop_offsets(padded, crop):
  """Every (row, col) at which `crop` sits in `padded`."""
  height, width = crop.shape[:2]
  return [(r, c) for r in range(padded.shape[0] - height + 1)
          for c in range(padded.shape[1] - width + 1)
          if np.array_equal(padded[r:r + height, c:c + width], crop)]


def test_crop_without_padding_is_identity_or_mirror():
  images = random_images()
  out = random_crop_flip(tf.constant(images), tf.constant([1, 2], tf.int64), padding=0).numpy()
  mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
  kept = [np.array_equal(o, i) for o, i in zip(out, images)]
  assert all(m or k for m, k in zip(mirrored, kept))
  assert 0 < sum(mirrored) < len(images)
  unflipped = random_crop_flip(tf.constant(images), tf.constant([1, 2], tf.int64), padding=0,
                               flip=False)
  np.testing.assert_array_equal(unflipped, images)


@pytest.mark.parametrize('fill', ['zeros', 'reflect'])
@pytest.mark.parametrize('flip', [False, True])
def test_random_crop_is_a_shifted_crop_of_the_padded_image(flip, fill):
  images, padding = random_images(), 3
  seed = tf.constant([5, 9], tf.int64)
  out = random_crop_flip(tf.constant(images), seed, padding=padding, flip=flip, fill=fill).numpy()
  assert out.shape == images.shape and out.dtype == np.uint8
  # NumPy's 'reflect' mirrors about the edge pixel without repeating it, as the official code's
  # tf.pad(mode='REFLECT') does.
  padded = np.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)],
                  mode='constant' if fill == 'zeros' else 'reflect')
  offsets, mirrored = [], 0
  for crop, source_image in zip(out, padded):
    found = crop_offsets(source_image, crop)
    if not found and flip:
      found = crop_offsets(source_image, crop[:, ::-1])
      mirrored += 1
    assert len(found) == 1
    offsets.append(found[0])
  rows, cols = zip(*offsets)
  assert set(rows) <= set(range(2 * padding + 1)) and set(cols) <= set(range(2 * padding + 1))
  assert len(set(offsets)) > 5  # each image gets its own offset
  assert (0 < mirrored < len(images)) if flip else mirrored == 0
  # Stateless: the same seed gives the same crops, another seed others.
  np.testing.assert_array_equal(
      random_crop_flip(tf.constant(images), seed, padding=padding, flip=flip, fill=fill), out)
  assert not np.array_equal(
      random_crop_flip(tf.constant(images), seed + 1, padding=padding, flip=flip, fill=fill), out)
  if fill == 'reflect':  # no zero pixel: the images have none
    assert out.min() > 0


# Image folders -------------------------------------------------------------------------------


def write_image(path, image):
  encode = tf.io.encode_png if path.suffix == '.png' else tf.io.encode_jpeg
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(encode(image).numpy())


@pytest.fixture
def image_folder(tmp_path):
  """root/{train,test}/{bird,cat,dog}/ with PNGs (16x16 and 20x30) and a JPEG per class."""
  rng = np.random.default_rng(0)
  for split_name in ('train', 'test'):
    for name in ('dog', 'bird', 'cat'):  # not sorted: class order comes from sorted folders
      directory = tmp_path / split_name / name
      write_image(directory / 'a.png', rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
      write_image(directory / 'b.png', rng.integers(0, 256, (20, 30, 1), dtype=np.uint8))
      write_image(directory / 'c.jpg', rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
      (directory / 'notes.txt').write_text('not an image')
  return tmp_path


def test_folder_source(image_folder):
  source = load_source('folder', str(image_folder), image_size=16)
  assert source.name == 'folder'
  assert source.class_names == ('bird', 'cat', 'dog')
  for part in (source.train, source.test):
    assert part.images.shape == (9, 16, 16, 3) and part.images.dtype == np.uint8
    np.testing.assert_array_equal(part.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
  # A PNG already at the target size comes back exactly as written.
  written = tf.io.decode_png((image_folder / 'test' / 'cat' / 'a.png').read_bytes()).numpy()
  np.testing.assert_array_equal(source.test.images[3], written)
  # A grayscale image becomes three equal channels.
  gray = source.train.images[1].astype(int)
  assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])


def test_folder_is_prepared_once_and_again_when_it_changes(image_folder, tmp_path_factory,
                                                           monkeypatch):
  cache = tmp_path_factory.mktemp('prepared')
  lines = []
  first = load_source('folder', str(image_folder), image_size=16, cache_dir=str(cache),
                      log=lines.append)
  assert isinstance(first.train.images, np.memmap)
  assert sum(line.startswith('prepared 9 images in ') for line in lines) == 2
  prepared_files = sorted(p.name for p in cache.iterdir())
  assert len(prepared_files) == 6  # images, labels and value counts of two splits

  def no_decoding(*args):
    raise AssertionError('decoded again')

  with monkeypatch.context() as patched:
    patched.setattr(prepared, '_decode_into', no_decoding)
    again = load_source('folder', str(image_folder), image_size=16, cache_dir=str(cache))
  np.testing.assert_array_equal(again.train.images, first.train.images)
  np.testing.assert_array_equal(again.test.labels, first.test.labels)
  # Another size is another prepared dataset; a changed file changes the digest of the split.
  load_source('folder', str(image_folder), image_size=8, cache_dir=str(cache))
  assert len(list(cache.iterdir())) == 12
  changed = np.full((16, 16, 3), 7, np.uint8)
  write_image(image_folder / 'train' / 'cat' / 'a.png', changed)
  rebuilt = load_source('folder', str(image_folder), image_size=16, cache_dir=str(cache))
  np.testing.assert_array_equal(rebuilt.train.images[3], changed)
  np.testing.assert_array_equal(rebuilt.test.images, first.test.images)
  assert len(list(cache.iterdir())) == 15
  assert not list(cache.glob('.*'))  # no partial file is left


@pytest.mark.parametrize('validation', [False, True])
def test_prepared_value_counts_give_the_statistics_of_the_kept_images(image_folder, tmp_path,
                                                                      validation):
  cache = tmp_path / 'prepared'
  source = load_source('folder', str(image_folder), image_size=16, cache_dir=str(cache))
  split = make_holdout(source, 'cat', validation=validation)
  # The same bits as counting the kept images themselves.
  mean, std = holdout_lib.channel_statistics(np.asarray(split.train.images))
  np.testing.assert_array_equal(split.mean, mean)
  np.testing.assert_array_equal(split.std, std)
  # Files prepared without value counts get them on their next use.
  stored = sorted(cache.glob('*.counts.npy'))
  for path in stored:
    path.unlink()
  again = load_source('folder', str(image_folder), image_size=16, cache_dir=str(cache))
  np.testing.assert_array_equal(again.train.value_counts, source.train.value_counts)
  assert sorted(cache.glob('*.counts.npy')) == stored


def test_folder_is_prepared_in_its_data_dir_by_default(image_folder):
  from tfanom.config import TrainConfig  # pylint: disable=g-import-not-at-top
  from tfanom.data.sources import prepare_data  # pylint: disable=g-import-not-at-top
  lines = []
  prepare_data(TrainConfig(dataset='folder', data_dir=str(image_folder), image_size=16),
               lines.append)
  assert len(list((image_folder / 'tfanom_cache').glob('*_16px_*.u8'))) == 2
  assert lines[-1] == 'folder: 9 training and 9 test images of 16x16x3 ready'


@pytest.mark.parametrize('name', ['a.png', 'c.jpg'])
def test_truncated_image_names_the_file(image_folder, name):
  path = image_folder / 'train' / 'cat' / name
  path.write_bytes(path.read_bytes()[:60])
  with pytest.raises(UsageError, match=f'{path} is not a readable image'):
    load_source('folder', str(image_folder), image_size=16)


def upright_pixels(orientation):
  """A 20 x 12 RGB image with no symmetry, and the same image stored as a camera tagging EXIF
  `orientation` stores it: PIL's exif_transpose (the reference) turns the stored one upright."""
  rng = np.random.default_rng(orientation)
  upright = Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8))
  stored = upright.transpose({2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                              6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
                              8: Image.Transpose.ROTATE_270}[orientation]) if orientation > 1 else upright
  exif = Image.Exif()
  exif[ORIENTATION_TAG] = orientation
  return upright, stored, exif


@pytest.mark.parametrize('orientation', range(1, 9))
def test_decoding_turns_images_upright_by_their_exif_orientation(tmp_path, orientation):
  upright, stored, exif = upright_pixels(orientation)
  path = tmp_path / 'photo.png'
  stored.save(path, exif=exif)  # lossless: the pixels must come back exactly
  with Image.open(path) as reference:
    expected = np.asarray(ImageOps.exif_transpose(reference))
  np.testing.assert_array_equal(expected, np.asarray(upright))
  decoded = decode_image(tf.constant(path.read_bytes()), 3).numpy()
  np.testing.assert_array_equal(decoded, expected)


def decode_images(files, image_size):
  """The images `decode_files` decodes from `files`, and their positions in `files`."""
  batches = list(decode_files(files, image_size, 3))
  return (np.concatenate([images for images, _ in batches]),
          np.concatenate([positions for _, positions in batches]))


def test_a_phone_jpeg_tagged_orientation_6_decodes_as_the_upright_photo(tmp_path):
  upright, stored, exif = upright_pixels(6)
  upright = upright.resize((60, 100))
  stored = upright.transpose(Image.Transpose.ROTATE_90)
  upright.save(tmp_path / 'upright.jpg', quality=95)
  stored.save(tmp_path / 'rotated.jpg', quality=95, exif=exif)
  images, kept = decode_images([str(tmp_path / 'upright.jpg'), str(tmp_path / 'rotated.jpg')],
                               image_size=40)
  assert kept.tolist() == [0, 1]
  difference = np.abs(images[0].astype(int) - images[1].astype(int)).mean()
  unturned = np.abs(images[0].astype(int) - np.rot90(images[1]).astype(int)).mean()
  assert difference < 3 < 20 < unturned  # JPEG's loss against another picture


def test_listing_follows_no_link_loop_and_lists_each_file_once(tmp_path):
  photos = tmp_path / 'photos'
  (photos / 'trip').mkdir(parents=True)
  for name in ('a.png', 'trip/b.png', '.hidden.png', 'trip/.c.png'):
    (photos / name).write_bytes(b'x')
  os.symlink('..', photos / 'trip' / 'up')  # two loops: exponential for glob.glob
  os.symlink('../..', photos / 'trip' / 'up2')
  os.symlink('a.png', photos / 'same.png')  # the same file under a second name
  expected = [str(photos / 'a.png'), str(photos / 'trip' / 'b.png')]
  assert find_image_files(str(photos)) == (expected, 2)
  assert find_image_files(str(photos / '**' / '*.png')) == (expected, 2)
  assert find_image_files(str(photos / '**')) == (expected, 2)
  assert find_image_files(str(photos / '*.png')) == (expected[:1], 1)
  assert find_image_files(str(photos / '.*.png')) == ([str(photos / '.hidden.png')], 0)
  (tmp_path / 'hidden').mkdir()
  (tmp_path / 'hidden' / '.x.png').write_bytes(b'x')
  with pytest.raises(UsageError, match='holds no files but hidden ones'):
    find_image_files(str(tmp_path / 'hidden'))
  assert input_root(str(photos / '**' / '*.png')) == str(photos)


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
  name = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b'caf\xe9.png'))
  write_image(pathlib.Path(name), np.full((8, 8, 3), 7, np.uint8))
  images, kept = decode_images([name], image_size=8)
  assert kept.tolist() == [0] and (images == 7).all()


@pytest.mark.parametrize('missing', ['train', 'test'])
def test_missing_split_folder(image_folder, missing):
  os.rename(image_folder / missing, image_folder / 'elsewhere')
  with pytest.raises(UsageError, match=f'has no {missing}/ folder'):
    load_source('folder', str(image_folder))


def test_folder_needs_data_dir_and_every_class(image_folder):
  with pytest.raises(UsageError, match='--dataset=folder needs --data_dir'):
    load_source('folder', None)
  os.rename(image_folder / 'test' / 'dog', image_folder / 'test_dog')
  with pytest.raises(UsageError, match="no folder for class 'dog'"):
    load_source('folder', str(image_folder))


def test_classes_only_in_test_are_refused_with_their_count(image_folder):
  rng = np.random.default_rng(1)
  for name in ('a.png', 'b.png'):
    write_image(image_folder / 'test' / 'fox' / name, rng.integers(0, 256, (8, 8, 3), np.uint8))
  with pytest.raises(UsageError, match=r'test has 1 class folders that train/ lacks '
                     r'\(fox; 2 images\)'):
    load_source('folder', str(image_folder))


def test_a_holdout_must_leave_two_known_classes(image_folder):
  shutil.rmtree(image_folder / 'train' / 'dog')
  shutil.rmtree(image_folder / 'test' / 'dog')
  source = load_source('folder', str(image_folder), image_size=16)
  with pytest.raises(UsageError, match='folder has 2 classes: holding one out leaves fewer than '
                     'two known classes'):
    make_holdout(source, 'cat')


def test_webp_is_decoded_and_other_files_are_counted(image_folder, caplog):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.random.default_rng(2).integers(0, 256, (16, 16, 3), np.uint8)
  cat = image_folder / 'train' / 'cat'
  Image.fromarray(image).save(cat / 'd.webp', lossless=True)
  Image.fromarray(image).save(cat / 'e.tif')
  (cat / '._c.jpg').write_bytes(b'\x00\x05\x16\x07' + bytes(80))  # macOS metadata
  with caplog.at_level('WARNING'):
    source = load_source('folder', str(image_folder), image_size=16)
  np.testing.assert_array_equal(source.train.labels, [0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
  np.testing.assert_array_equal(source.train.images[6], image)  # d.webp, after a, b, c
  assert (f'{image_folder / "train"}: skipped 1 macOS AppleDouble ._* file and 4 files of '
          'formats not decoded (.tif 1, .txt 3; ' in caplog.text)


def test_holdout_by_a_number_that_names_another_index_says_so(tmp_path, caplog):
  image = np.zeros((8, 8, 3), np.uint8)
  for split_name in ('train', 'test'):
    for number in range(11):
      write_image(tmp_path / split_name / str(number) / 'a.png', image)
  source = load_source('folder', str(tmp_path), image_size=8)
  assert source.class_names[:4] == ('0', '1', '10', '2')
  with caplog.at_level('WARNING'):
    assert make_holdout(source, '2').holdout_index == 3
  assert "--holdout=2 takes the class named '2', class index 3; index 2 is '10'" in caplog.text
  caplog.clear()
  with caplog.at_level('WARNING'):
    make_holdout(source, '1')
  assert '--holdout' not in caplog.text


# Files as cameras, scanners and other programs write them: PIL writes each, and PIL's own
# conversion to RGB is the reference for its pixels.
ODDITY_PIXELS = np.random.default_rng(5).integers(0, 256, (24, 32, 3), np.uint8)
DEEP_PIXELS = np.random.default_rng(6).integers(0, 2**16, (24, 32), np.uint16)


def write_oddities(folder: pathlib.Path) -> dict:
  """{name: file} of one image of each kind in `folder`, with an AppleDouble file and a note."""
  folder.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(ODDITY_PIXELS)
  exif = Image.Exif()
  exif[ORIENTATION_TAG] = 6
  files = dict(cmyk=folder / 'cmyk.jpg', grey=folder / 'grey.jpg', rgb=folder / 'rgb.jpg',
               misnamed=folder / 'png.JPEG', deep=folder / 'deep.png',
               rotated=folder / 'rotated.png', webp=folder / 'photo.webp')
  image.convert('CMYK').save(files['cmyk'], quality=95)
  image.convert('L').save(files['grey'], quality=95)
  image.save(files['rgb'], quality=95)  # how close any JPEG decodes to PIL's decoding
  image.save(files['misnamed'], 'PNG')
  Image.fromarray(DEEP_PIXELS).save(files['deep'])  # mode I;16
  image.save(files['rotated'], exif=exif)
  image.save(files['webp'], lossless=True)
  (folder / '._cmyk.jpg').write_bytes(b'\x00\x05\x16\x07' + bytes(80))  # macOS metadata
  (folder / 'notes.txt').write_text('not an image')
  return files


def test_cmyk_grey_16bit_and_misnamed_images_decode_as_pil_converts_them(tmp_path):
  files = write_oddities(tmp_path)
  decoded = {name: decode_image(tf.constant(path.read_bytes()), 3).numpy().astype(int)
             for name, path in files.items()}
  with Image.open(files['cmyk']) as cmyk, Image.open(files['grey']) as grey:
    assert (cmyk.mode, grey.mode) == ('CMYK', 'L')
  with Image.open(files['deep']) as deep:
    assert deep.mode == 'I;16'
  reference = {name: np.asarray(Image.open(path).convert('RGB')).astype(int)
               for name, path in files.items() if name != 'deep'}
  reference['rotated'] = np.asarray(ImageOps.exif_transpose(Image.open(files['rotated'])))
  errors = {name: np.abs(decoded[name] - reference[name]) for name in reference}
  # Lossless files come back exactly as PIL reads them, whatever their suffix.
  for name in ('misnamed', 'rotated', 'webp'):
    assert errors[name].max() == 0, name
  # JPEGs: TensorFlow's and PIL's JPEG decoders round differently (measured: max 6, mean 1.47 for
  # the RGB JPEG). CMYK and grey JPEGs differ no more (max 7 and 5, mean 1.74 and 1.08); CMYK
  # read with its ink values inverted would be off by up to 255.
  for name in ('rgb', 'cmyk', 'grey'):
    assert errors[name].max() <= 8 and errors[name].mean() < 2, name
  assert errors['cmyk'].mean() < errors['rgb'].mean() + 0.5
  # 16-bit PNGs keep each value's high byte (libpng's strip_16). PIL's own 'I;16' -> 'RGB' clips
  # every value above 255 to 255, so it cannot be the reference here.
  for channel in range(3):
    np.testing.assert_array_equal(decoded['deep'][..., channel], DEEP_PIXELS >> 8)


def test_a_folder_of_oddities_trains_and_scores_saying_each_choice_once(
    tmp_path, train_command, digits_export_without_aux, caplog, capsys):
  """CMYK, grey, 16-bit, EXIF-rotated, WebP and misnamed files, AppleDouble files and a note, in
  classes named '0', '2' and '10' (text order: 0, 10, 2)."""
  root = tmp_path / 'data'
  write_oddities(root / 'train' / '0')
  for name in ('2', '10'):
    for n in range(4):
      write_image(root / 'train' / name / f'{n}.png',
                  np.roll(ODDITY_PIXELS, 3 * n + int(name), axis=1))
  for name in ('0', '2', '10'):
    for n in range(2):
      write_image(root / 'test' / name / f'{n}.png', np.roll(ODDITY_PIXELS, n, axis=0))
  with caplog.at_level('WARNING'):
    train_command(['--dataset=folder', f'--data_dir={root}', f'--workdir={tmp_path / "run"}',
                   '--holdout=10', '--depth=10', '--width=1', '--image_size=16',
                   '--batch_size=8', '--eval_batch_size=8', '--epochs=1', '--eval_every=0',
                   '--final_window=1', '--aux=none', '--strategy=default'])
  assert (tmp_path / 'run' / RESULTS_FILE).exists()
  said = [record.getMessage() for record in caplog.records if record.levelname == 'WARNING']
  # train/ has 7 images of class '0' and 4 each of '10' and '2'; test/ 2 plain PNGs a class.
  for line in [
      f"{root / 'train'}: class folders named by numbers are ordered as text, not as numbers: "
      "class indices 0='0', 1='10', 2='2'; --holdout=NAME takes the folder of that name",
      f'{root / "train"}: skipped 1 macOS AppleDouble ._* file and 1 file of formats not '
      f'decoded (.txt 1; convert them to one of {", ".join(IMAGE_EXTENSIONS)})',
      'turned 1 of 15 images upright by their EXIF orientation',
      'read 1 of 15 images from PNGs of 16 bits per channel: each value kept its high byte '
      '(v // 256)',
      "--holdout=10 takes the class named '10', class index 1"]:
    assert said.count(line) == 1, (line, said)

  caplog.clear()
  lines = []
  with caplog.at_level('WARNING'):
    summary = score_files(ScoreConfig(export_dir=str(digits_export_without_aux['export_dir']),
                                      images=str(root / 'train' / '0'),
                                      output=str(tmp_path / 'scored')), log=lines.append)
  with open(tmp_path / 'scored' / 'scores.csv', newline='') as handle:
    rows = list(csv.DictReader(handle))
  assert sorted(os.path.basename(row['path']) for row in rows) == [
      'cmyk.jpg', 'deep.png', 'grey.jpg', 'photo.webp', 'png.JPEG', 'rgb.jpg', 'rotated.png']
  for row in rows:
    scores = [float(value) for key, value in row.items() if key.endswith('_score')]
    assert len(scores) > 3 and np.isfinite(scores).all(), row
  assert (summary['scored'], summary['hidden']) == (7, 1)
  assert summary['skipped_files'] == [str(root / 'train' / '0' / 'notes.txt')]
  said = [record.getMessage() for record in caplog.records if record.levelname == 'WARNING']
  assert said.count('turned 1 of 7 images upright by their EXIF orientation') == 1
  assert said.count('read 1 of 7 images from PNGs of 16 bits per channel: each value kept its '
                    'high byte (v // 256)') == 1
  printed = lines[0].splitlines()
  assert f'skipped (not readable images): {root / "train" / "0" / "notes.txt"}' in printed
  assert ('ignored 1 hidden files (names starting with "."); name them in a glob such as '
          '"photos/.*.png" to score them') in printed

  # A restored run prepares its folder again when the prepared files are gone, and says so
  # through its log only: a diagnostic's stdout holds its JSON report alone.
  shutil.rmtree(root / prepared.CACHE_FOLDER)
  capsys.readouterr()
  lines = []
  restored = load_run(str(tmp_path / 'run'), log=lines.append)
  assert restored.split.num_classes == 2
  assert any(line.startswith('prepared ') for line in lines), lines
  assert capsys.readouterr().out == ''


def test_class_folders_named_by_numbers_are_said_only_when_text_order_differs(tmp_path, caplog):
  for names in (('0', '1', '9'), ('7', 'cat', '10'), ('0', '10', '2')):
    for name in names:
      write_image(tmp_path / ''.join(names) / name / 'a.png', np.zeros((4, 4, 3), np.uint8))
    caplog.clear()
    with caplog.at_level('WARNING'):
      class_names = list_image_folder(tmp_path / ''.join(names))[0]
    assert class_names == tuple(sorted(names))
    assert ('ordered as text' in caplog.text) == (names == ('0', '10', '2'))


def test_unknown_dataset():
  with pytest.raises(UsageError, match='--dataset=bogus is unknown'):
    load_source('bogus')


# TFDS ----------------------------------------------------------------------------------------

MOCK_EXAMPLES = 6
TFDS_CASES = {
    'cifar10': ((32, 32, 3), ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
                              'horse', 'ship', 'truck')),
    'mnist': ((28, 28, 1), tuple(str(d) for d in range(10))),
    'stl10': ((96, 96, 3), ('airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse', 'monkey',
                            'ship', 'truck')),
}


@pytest.fixture(scope='module')
def tfds_data_dir(tmp_path_factory):
  """The metadata that `tfds build` writes (split sizes, class names), without the records."""
  import tensorflow_datasets as tfds
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  for name, (_, class_names) in TFDS_CASES.items():
    builder = tfds.builder(name, data_dir=data_dir)
    builder.info.features['label'].names = list(class_names)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[MOCK_EXAMPLES], num_bytes=0)
        for split in ('train', 'test')]))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
  return data_dir


@pytest.mark.parametrize('name', list(TFDS_CASES))
def test_tfds_source(tfds_data_dir, name):
  import tensorflow_datasets as tfds
  shape, class_names = TFDS_CASES[name]
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=tfds_data_dir,
                              policy=tfds.testing.MockPolicy.USE_FILES):
    source = load_source(name, tfds_data_dir)
  assert source.name == name
  assert source.class_names == class_names
  for part in (source.train, source.test):
    assert part.images.shape == (MOCK_EXAMPLES, *shape) and part.images.dtype == np.uint8
    assert part.labels.dtype == np.int64 and set(part.labels) <= set(range(10))
  split = make_holdout(source, class_names[3])
  assert split.holdout_index == 3 and len(split.evaluation) == MOCK_EXAMPLES
  # Prepared beside the TFDS data, as folders are beside theirs.
  cached = pathlib.Path(tfds_data_dir, prepared.CACHE_FOLDER)
  assert len(list(cached.glob(f'{name}_train_{shape[0]}px_*.u8'))) == 1
  assert len(list(cached.glob(f'{name}_test_{shape[0]}px_*.labels.npy'))) == 1


def tfds_reads(monkeypatch):
  """The splits TFDS is asked to read from now on (each read then fails, as unprepared data)."""
  import tensorflow_datasets as tfds
  reads = []

  def as_dataset(self, split, **kwargs):
    del kwargs
    reads.append(split)
    raise AssertionError(f'{self.name}: could not find data')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'as_dataset', as_dataset)
  return reads


@pytest.mark.parametrize('name', ['mnist', 'cifar10'])
def test_tfds_splits_are_prepared_once_as_tfds_reads_them(tfds_data_dir, name, tmp_path,
                                                          monkeypatch):
  import tensorflow_datasets as tfds
  mock = dict(num_examples=MOCK_EXAMPLES, data_dir=tfds_data_dir,
              policy=tfds.testing.MockPolicy.USE_FILES)
  lines = []
  with tfds.testing.mock_data(**mock):
    source = load_source(name, tfds_data_dir, cache_dir=str(tmp_path), log=lines.append)
    builder = tfds.builder(name, data_dir=tfds_data_dir)
    direct = {split: list(zip(*tfds.as_numpy(builder.as_dataset(split=split,
                                                                 as_supervised=True))))
              for split in ('train', 'test')}
  assert any(line.startswith(f'prepared {MOCK_EXAMPLES} images') for line in lines)
  for part, split in ((source.train, 'train'), (source.test, 'test')):
    assert isinstance(part.images, np.memmap)
    np.testing.assert_array_equal(part.images, np.stack(direct[split][0]))
    np.testing.assert_array_equal(part.labels, np.array(direct[split][1], np.int64))
  written = sorted(p.name for p in tmp_path.iterdir())
  assert len(written) == 6  # images, labels and value counts of two splits, each its own key

  # A second load maps the files: TFDS is not read (outside mock_data it has no records at all).
  reads = tfds_reads(monkeypatch)
  again = load_source(name, tfds_data_dir, cache_dir=str(tmp_path))
  assert reads == []
  np.testing.assert_array_equal(again.train.images, source.train.images)
  np.testing.assert_array_equal(again.test.labels, source.test.labels)
  assert sorted(p.name for p in tmp_path.iterdir()) == written
  monkeypatch.undo()

  # Another version of the dataset has another key: it is prepared again, beside the first.
  builder_of = tfds.builder

  def other_version(*args, **kwargs):
    builder = builder_of(*args, **kwargs)
    builder._version = tfds.core.Version('99.0.0')  # pylint: disable=protected-access
    return builder

  monkeypatch.setattr(tfds, 'builder', other_version)
  with tfds.testing.mock_data(**mock):
    load_source(name, tfds_data_dir, cache_dir=str(tmp_path))
  assert len(set(p.name for p in tmp_path.iterdir()) - set(written)) == 6


@pytest.mark.parametrize('name', list(TFDS_CASES))
def test_unprepared_tfds_source_says_how_to_build_it(tmp_path, name):
  with pytest.raises(UsageError, match=f'--data_dir=/nonexistent does not exist.*`tfds build '
                                       f'{name} --data_dir=DIR`'):
    load_source(name, '/nonexistent')
  with pytest.raises(UsageError, match=f'{name} is not prepared in {tmp_path}.*`tfds build '
                                       f'{name} --data_dir=DIR`'):
    load_source(name, str(tmp_path))
