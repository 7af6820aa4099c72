"""The ImageNet subsets: Table 8's members, the ILSVRC folder and TFDS readers, the decoded-image
cache, 256 -> 224 cropping, one subset trained end to end, and the errors users can act on."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfanom.config import TrainConfig
from tfanom.data import imagenet, prepared, subsets
from tfanom.data.holdout import channel_statistics, make_holdout
from tfanom.data.pipeline import InputPipeline, random_crop_flip
from tfanom.data.sources import load_source, load_split
from tfanom.errors import UsageError
from tfanom.inference.evaluation import EvalConfig, evaluate
from tfanom.inference.restore import load_run
from tfanom.inference.scorer import ScoringModule
from tfanom.anomaly.metrics import skew
from tfanom.training.loop import Trainer
from tfanom.training.run import train_and_evaluate

# Table 1 of the paper.
TABLE1_MEMBERS = {'dog': 12, 'car': 10, 'snake': 9, 'spider': 6, 'fungus': 6}
# ILSVRC2012 has 50 validation images per class; 10 keep every check (skew is one member in k
# whatever the count) at a fifth of the decoding and evaluation.
TEST_PER_MEMBER = 10
TRAIN_PER_MEMBER = 4
DISTRACTORS = ('n01440764', 'n01443537')  # tench, goldfish: in the folder, in no subset
SMALL = 16  # decoded side used where the exact size does not matter


def member_colour(index):
  return np.array([10 + 20 * index, 245 - 20 * index, 128], np.uint8)


def write_jpegs(folder: pathlib.Path, colour, count, height=40, width=48):
  folder.mkdir(parents=True, exist_ok=True)
  image = np.broadcast_to(colour, (height, width, 3)).copy()
  image[::7] = 255 - image[::7]  # some structure, so images are not flat
  encoded = tf.io.encode_jpeg(image, quality=95).numpy()
  for number in range(count):
    (folder / f'{folder.name}_{number}.JPEG').write_bytes(encoded)


def all_wnids():
  return [wnid for members in subsets.SUBSETS.values() for wnid, _ in members]


@pytest.fixture(scope='module')
def ilsvrc(tmp_path_factory):
  """A fake ILSVRC2012 folder: every member of every subset, plus distractor classes.

  Each class's images have their own colour (its index in its subset), so labels can be checked.
  """
  root = tmp_path_factory.mktemp('ilsvrc')
  for members in subsets.SUBSETS.values():
    for index, (wnid, _) in enumerate(members):
      write_jpegs(root / 'train' / wnid, member_colour(index), TRAIN_PER_MEMBER)
      write_jpegs(root / 'val' / wnid, member_colour(index), TEST_PER_MEMBER)
  for wnid in DISTRACTORS:
    for split in ('train', 'val'):
      write_jpegs(root / split / wnid, np.array([0, 0, 0], np.uint8), 3)
  return root


def test_table8_members_are_ilsvrc2012_classes():
  valid = set(subsets.ilsvrc2012_wnids())
  assert len(valid) == 1000
  assert {name: len(members) for name, members in subsets.SUBSETS.items()} == TABLE1_MEMBERS
  wnids = all_wnids()
  assert set(wnids) <= valid
  assert len(set(wnids)) == len(wnids)  # no class in two subsets
  for members in subsets.SUBSETS.values():
    names = [name for _, name in members]
    assert len(set(names)) == len(names)


def test_every_subset_has_defaults_and_the_imagenet_network():
  for subset in (*subsets.SUBSETS, 'subset'):
    config = TrainConfig(dataset=f'imagenet_{subset}',
                         members=('n01774750', 'n01773157') if subset == 'subset' else ()
                         ).resolved()
    assert (config.depth, config.width, config.extra_groups, config.dropout) == (28, 4, 1, 0.0)
    assert (config.batch_size, config.epochs, config.aux_weight) == (64, 200, 0.5)
    assert (config.image_size, config.crop_size, config.stem) == (256, 224, 'imagenet_maxpool')
  stl10 = TrainConfig(dataset='stl10').resolved()
  cifar10 = TrainConfig(dataset='cifar10').resolved()
  assert (stl10.extra_groups, stl10.width, stl10.batch_size) == (1, 4, 256)
  assert stl10.epochs == 2 * cifar10.epochs and cifar10.stem == 'cifar'


@pytest.mark.parametrize('subset', list(subsets.SUBSETS))
def test_subset_skew_is_one_member_in_k(ilsvrc, tmp_path, subset):
  source = load_source(f'imagenet_{subset}', str(ilsvrc), SMALL, cache_dir=str(tmp_path))
  members = TABLE1_MEMBERS[subset]
  assert source.class_names == tuple(name for _, name in subsets.SUBSETS[subset])
  assert source.class_ids == tuple(wnid for wnid, _ in subsets.SUBSETS[subset])
  assert len(source.test) == TEST_PER_MEMBER * members  # distractors ignored
  assert len(source.train) == TRAIN_PER_MEMBER * members
  assert source.train.images.shape[1:] == (SMALL, SMALL, 3)
  # Each class's images carry its colour: labels follow Table 8's order.
  for label in range(members):
    mean = source.test.images[source.test.labels == label].reshape(-1, 3).mean(0)
    assert np.abs(mean - member_colour(label)).max() < 40
  split = make_holdout(source, 0)
  assert 100 * float(skew(split.is_anomaly)) == pytest.approx(100 / members)
  # From the prepared file's value counts, the statistics of the training images themselves.
  mean, std = channel_statistics(np.asarray(split.train.images))
  np.testing.assert_array_equal(split.mean, mean)
  np.testing.assert_array_equal(split.std, std)
  assert round(100 / members, 2) == {12: 8.33, 10: 10.00, 9: 11.11, 6: 16.67}[members]


def test_holdout_by_index_name_or_wnid(ilsvrc, tmp_path):
  source = load_source('imagenet_spider', str(ilsvrc), SMALL, cache_dir=str(tmp_path))
  for holdout in ('3', 'black widow', 'n01774384'):
    assert make_holdout(source, holdout).holdout_name == 'black widow'
  with pytest.raises(UsageError, match='not a class of this dataset'):
    make_holdout(source, 'house spider')


def test_user_chosen_subset(ilsvrc, tmp_path):
  members = ('n02088364', 'n01440764')  # beagle (Table 8) and tench (named by its id)
  source = load_source('imagenet_subset', str(ilsvrc), SMALL, members, str(tmp_path))
  assert source.class_names == ('beagle', 'n01440764')
  assert np.bincount(source.test.labels).tolist() == [TEST_PER_MEMBER, 3]
  with pytest.raises(UsageError, match='n99999999 is not'):
    load_source('imagenet_subset', str(ilsvrc), SMALL, ('n02088364', 'n99999999'))
  with pytest.raises(UsageError, match='at least two different'):
    load_source('imagenet_subset', str(ilsvrc), SMALL, ('n02088364', 'n02088364'))
  with pytest.raises(UsageError, match='--members'):
    TrainConfig(dataset='imagenet_dog', members=('n02088364',)).resolved()


def test_cache_is_reused_and_matches_direct_decoding(ilsvrc, tmp_path, monkeypatch):
  first = load_source('imagenet_fungus', str(ilsvrc), SMALL, cache_dir=str(tmp_path))
  cached = sorted(p.name for p in tmp_path.iterdir())
  assert len(cached) == 6  # images, labels and value counts of two splits

  def no_decoding(*args):
    raise AssertionError('decoded again')

  monkeypatch.setattr(prepared, '_decode_into', no_decoding)
  second = load_source('imagenet_fungus', str(ilsvrc), SMALL, cache_dir=str(tmp_path))
  np.testing.assert_array_equal(first.train.images, second.train.images)
  np.testing.assert_array_equal(first.test.labels, second.test.labels)
  assert sorted(p.name for p in tmp_path.iterdir()) == cached
  monkeypatch.undo()
  # The cached pixels are those of the shared resize-and-crop decoder.
  from tfanom.data.decoding import decode_files
  files = sorted(str(p) for p in (ilsvrc / 'train' / subsets.SUBSETS['fungus'][0][0]).iterdir())
  direct = np.concatenate([images for images, _ in decode_files(files, SMALL, 3)])
  np.testing.assert_array_equal(direct, first.train.images[:len(files)])


def test_default_cache_lives_in_data_dir(tmp_path):
  wnids = ('n01774750', 'n01773157', 'n01775062')
  for index, wnid in enumerate(wnids):
    for split in ('train', 'val'):
      write_jpegs(tmp_path / split / wnid, member_colour(index), 2)
  load_source('imagenet_subset', str(tmp_path), SMALL, wnids)
  assert len(list((tmp_path / imagenet.CACHE_FOLDER).glob('*.u8'))) == 2


def test_256_then_224_crops(tmp_path):
  """Appendix A: shorter side to 256 and centre crop; the network sees 224 crops."""
  wnids = ('n01774750', 'n01773157', 'n01775062')
  for index, wnid in enumerate(wnids):
    for split in ('train', 'val'):
      write_jpegs(tmp_path / split / wnid, member_colour(index), 2, height=300, width=400)
      (tmp_path / split / wnid / 'tall.JPEG').write_bytes(tf.io.encode_jpeg(
          np.full((500, 260, 3), member_colour(index), np.uint8)).numpy())
  config = TrainConfig(dataset='imagenet_subset', members=wnids).resolved()
  source = load_source('imagenet_subset', str(tmp_path), config.image_size, wnids,
                       str(tmp_path / 'cache'))
  assert source.train.images.shape == (9, 256, 256, 3)
  split = make_holdout(source, 0)
  pipeline = InputPipeline(split, batch_size=2, aux_batch_size=2, seed=0,
                           crop_size=config.crop_size)
  assert pipeline.image_shape == (224, 224, 3)
  batch = next(iter(pipeline.train_dataset(0)))
  assert batch['image'].shape == (2, 224, 224, 3) and batch['aux_image'].shape == (2, 224, 224, 3)
  evaluation = next(iter(pipeline.eval_dataset(9)))
  np.testing.assert_array_equal(evaluation['image'].numpy(),
                                np.asarray(split.evaluation.images)[:, 16:240, 16:240])


def test_random_training_crops_are_windows_of_the_stored_image():
  stored = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
  crops = random_crop_flip(tf.repeat(stored[None], 64, axis=0), tf.constant([3, 4], tf.int64),
                           padding=0, flip=False, size=12).numpy()
  windows = {stored[r:r + 12, c:c + 12].tobytes() for r in range(9) for c in range(9)}
  assert all(crop.tobytes() in windows for crop in crops)
  assert len({crop.tobytes() for crop in crops}) > 20  # the offsets vary


def test_subset_trains_and_evaluates_end_to_end(ilsvrc, tmp_path):
  config = TrainConfig(dataset='imagenet_spider', holdout='wolf spider', data_dir=str(ilsvrc),
                       cache_dir=str(tmp_path / 'cache'), workdir=str(tmp_path / 'run'),
                       image_size=36, crop_size=32, depth=10, width=1, epochs=1, batch_size=8,
                       final_window=1, strategy='default', aux='none')
  results = train_and_evaluate(config, log=lambda line: None)
  assert results['holdout'] == dict(index=5, name='wolf spider')
  assert results['num_examples'] == 6 * TEST_PER_MEMBER
  assert results['num_anomalies'] == TEST_PER_MEMBER
  assert results['skew'] == pytest.approx(100 / 6)
  assert set(results['ap']) >= {'msp', 'odin'}
  saved = json.loads((tmp_path / 'run' / 'results.json').read_text())
  assert saved['flags']['stem'] == 'imagenet_maxpool' and saved['flags']['crop_size'] == 32
  # Offline scoring sees the central 32x32 crop of the stored 36x36 images, as training's
  # evaluation did: the same accuracy and APs, and the served scores are the evaluated ones.
  report = evaluate(EvalConfig(workdir=str(tmp_path / 'run'), scores=('msp', 'odin')),
                    log=lambda line: None)
  assert report['accuracy'] == pytest.approx(results['accuracy'])
  for name in ('msp', 'odin'):
    assert report['scores'][name]['ap'] == pytest.approx(results['ap'][name], abs=1e-6)
  run = load_run(str(tmp_path / 'run'))
  module = ScoringModule(run, run.config.odin_temperature, run.config.odin_epsilon)
  images = run.split.evaluation.images[:20]
  assert images.shape[1:] == (36, 36, 3)
  with np.load(tmp_path / 'run' / 'scores.npz') as evaluated:
    np.testing.assert_allclose(module.serve(images)['msp_score'], evaluated['msp'][:20],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(module.odin(images)['odin_score'], evaluated['odin'][:20],
                               rtol=1e-5, atol=1e-6)


def test_subset_trains_with_cpc(ilsvrc, tmp_path):
  # The maxpool stem shrinks patches fourfold: 32-pixel patches every 16 of a 64 crop, a 3x3 grid.
  # The training steps are what is ImageNet's own here: a subset's evaluation and results are
  # checked by test_subset_trains_and_evaluates_end_to_end, a CPC run's by test_cpc.py's
  # test_digits_with_cpc_at_its_defaults_trains_and_scores_above_the_skew.
  config = TrainConfig(dataset='imagenet_spider', holdout='tarantula', data_dir=str(ilsvrc),
                       cache_dir=str(tmp_path / 'cache'), image_size=72, crop_size=64, depth=10,
                       width=1, epochs=1, batch_size=8, strategy='default', aux='cpc',
                       cpc_patch_size=32, cpc_patch_stride=16, cpc_steps=2).resolved()
  trainer = Trainer(config, load_split(config), tf.distribute.get_strategy(),
                    log=lambda line: None)
  summary = trainer.train_epoch(0)  # two steps of 8 images
  assert np.isfinite([summary['loss'], summary['aux_loss']]).all()


def test_tfds_imagenet2012_is_filtered_by_label(tmp_path, monkeypatch):
  """TFDS's prepared imagenet2012 (mocked): members kept in Table 8's order, others dropped."""
  spider = subsets.SUBSETS['spider']
  wnids = list(subsets.ilsvrc2012_wnids())
  labels = [wnids.index(wnid) for wnid, _ in spider] + [0, 999]
  colours = [member_colour(i) for i in range(len(spider))] + [np.zeros(3, np.uint8)] * 2

  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del self, decoders, read_config, kwargs
    per_class = 3 if split == 'train' else 2
    images = [tf.io.encode_jpeg(np.broadcast_to(c, (30, 34, 3)).copy()).numpy()
              for c in colours for _ in range(per_class)]
    examples = {'image': images, 'label': np.repeat(labels, per_class).astype(np.int64),
                'file_name': [f'{split}_{i}.JPEG' for i in range(len(images))]}
    return tf.data.Dataset.from_tensor_slices(examples).shuffle(100, seed=1)

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'is_prepared', lambda self: True)
  data_dir = tmp_path / 'tfds'
  data_dir.mkdir()
  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    source = load_source('imagenet_spider', str(data_dir), SMALL, cache_dir=str(tmp_path / 'c'))
  assert np.bincount(source.train.labels).tolist() == [3] * 6
  assert np.bincount(source.test.labels).tolist() == [2] * 6
  for label in range(6):
    mean = source.train.images[source.train.labels == label].reshape(-1, 3).mean(0)
    assert np.abs(mean - member_colour(label)).max() < 4


# Errors ----------------------------------------------------------------------------------------


def test_missing_member_folders_are_named(ilsvrc, tmp_path):
  root = tmp_path / 'partial'
  for split in ('train', 'val'):
    (root / split).mkdir(parents=True)
    for wnid, _ in subsets.SUBSETS['spider'][2:]:  # the first two members are missing
      (root / split / wnid).symlink_to(ilsvrc / split / wnid)
  with pytest.raises(UsageError, match='no folder for n01774750, n01773157: lay ILSVRC2012'):
    load_source('imagenet_spider', str(root), SMALL, cache_dir=str(tmp_path / 'c'))


def test_member_without_images_is_named(ilsvrc, tmp_path):
  root = tmp_path / 'empty'
  for split in ('train', 'val'):
    for wnid, _ in subsets.SUBSETS['fungus']:
      (root / split).mkdir(parents=True, exist_ok=True)
      if wnid == 'n13044778' and split == 'val':
        (root / split / wnid).mkdir()
      else:
        (root / split / wnid).symlink_to(ilsvrc / split / wnid)
  with pytest.raises(UsageError, match='n13044778 holds no images'):
    load_source('imagenet_fungus', str(root), SMALL, cache_dir=str(tmp_path / 'c'))


def test_corrupt_jpeg_is_named_and_no_cache_is_left(tmp_path):
  wnids = ('n01774750', 'n01773157', 'n01775062')
  for index, wnid in enumerate(wnids):
    for split in ('train', 'val'):
      write_jpegs(tmp_path / split / wnid, member_colour(index), 3)
  broken = tmp_path / 'train' / wnids[1] / f'{wnids[1]}_1.JPEG'
  broken.write_bytes(broken.read_bytes()[:40])
  cache = tmp_path / 'cache'
  with pytest.raises(UsageError, match=f'{broken} is not a readable image'):
    load_source('imagenet_subset', str(tmp_path), SMALL, wnids, str(cache))
  assert not list(cache.iterdir())


def test_data_dir_errors(tmp_path):
  with pytest.raises(UsageError, match='needs --data_dir'):
    load_source('imagenet_dog', None, SMALL)
  with pytest.raises(UsageError, match='does not exist'):
    load_source('imagenet_dog', str(tmp_path / 'nowhere'), SMALL)
  with pytest.raises(UsageError, match='neither an ILSVRC2012 folder'):
    load_source('imagenet_dog', str(tmp_path), SMALL)
  with pytest.raises(UsageError, match='imagenet_cat is unknown'):
    TrainConfig(dataset='imagenet_cat').resolved()
  with pytest.raises(UsageError, match='imagenet_cat is unknown'):
    load_source('imagenet_cat', str(tmp_path), SMALL)


def test_cli_reports_missing_members_in_one_line(tmp_path, train_command, capsys):
  (tmp_path / 'train').mkdir()
  with pytest.raises(SystemExit) as exit_info:
    train_command(['--dataset=imagenet_spider', f'--data_dir={tmp_path}',
                   f'--workdir={tmp_path / "run"}'])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.splitlines() == [
      f'tfanom.train: error: {tmp_path / "train"} has no folder for '
      f'{", ".join(w for w, _ in subsets.SUBSETS["spider"])}: lay ILSVRC2012 '
      f'out as {imagenet.LAYOUT} (validation images sorted into class folders)']
