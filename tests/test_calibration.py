"""Calibrated thresholds: the split-conformal quantile, the share of new normal images it accepts,
and where the calibration images come from."""

import types

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from tfanom.data.arrays import stratified_mask
from tfanom.data.holdout import make_holdout
from tfanom.errors import UsageError
from tfanom.inference.calibration import (NORMAL_RATES, calibrate, check_normal_rate,
                                          conformal_threshold, rates_with)
from tfanom.inference import savedmodel
from tfanom.inference.savedmodel import calibration_images


@pytest.mark.parametrize('n', [1, 9, 19, 100, 1001])
@pytest.mark.parametrize('rate', [0.5, 0.9, 0.95, 0.99])
def test_the_threshold_is_the_conformal_order_statistic(n, rate):
  values = np.random.default_rng(n).normal(size=n)
  rank = int(np.ceil(rate * (n + 1)))  # the textbook formula, 1-based
  expected = np.sort(values)[rank - 1] if rank <= n else values.max()
  assert conformal_threshold(values, rate) == expected


@pytest.mark.parametrize('distribution', ['normal', 'exponential', 'lognormal'])
def test_new_normal_scores_are_accepted_at_the_rate(distribution):
  """Held-out draws of the same distribution: the accepted share is within a binomial 99% interval
  of the rate (the 200,000 calibration draws make the threshold's own spread negligible)."""
  rng = np.random.default_rng(0)
  draw = getattr(rng, distribution)
  calibration = calibrate({'score': draw(size=200_000)}, NORMAL_RATES, 'synthetic')
  new = np.float32(draw(size=20_000))
  for rate, threshold in zip(calibration.rates, calibration.thresholds['score']):
    accepted = int((new <= np.float32(threshold)).sum())
    low, high = stats.binom.interval(0.99, len(new), rate)
    assert low <= accepted <= high, (rate, accepted)


def test_calibration_records_its_size_and_the_rates_met():
  values = np.arange(100, dtype=np.float64)  # 0..99
  calibration = calibrate({'a': values, 'b': -values}, (0.9, 0.99), 'test')
  assert calibration.size == 100 and calibration.source == 'test'
  # rank ceil(0.9 * 101) = 91: the 91st smallest, 90; ceil(0.99 * 101) = 100: the largest.
  assert calibration.thresholds['a'] == [90.0, 99.0]
  assert calibration.rates_met['a'] == [0.91, 1.0]
  assert calibration.threshold('b', 0.99) == 0.0
  assert calibration.to_dict()['thresholds']['b'] == [-9.0, 0.0]


def test_ties_at_the_threshold_are_accepted_and_counted():
  calibration = calibrate({'msp': np.array([-1.0] * 98 + [-0.5, -0.2])}, (0.9,), 'test')
  assert calibration.thresholds['msp'] == [-1.0]
  assert calibration.rates_met['msp'] == [0.98]


def test_rates():
  assert rates_with(0.95) == NORMAL_RATES
  assert rates_with(0.8) == (0.8, 0.9, 0.95, 0.99)
  for bad in (0.0, 1.0, -0.1, 1.5):
    with pytest.raises(UsageError, match='strictly between 0 and 1'):
      check_normal_rate(bad)


def fake_run(source, validation):
  split = make_holdout(source, 3, validation=validation, seed=0)
  return types.SimpleNamespace(split=split, config=types.SimpleNamespace(validation=validation,
                                                                          seed=0))


def test_calibration_images_are_normal_and_never_the_test_set(digits):
  lines = []
  images, source = calibration_images(fake_run(digits, validation=True), None, lines.append)
  split = fake_run(digits, validation=True).split
  np.testing.assert_array_equal(images, split.evaluation.images[~split.is_anomaly])
  assert source.endswith('known-class images of the validation split') and not lines
  # Without a validation split: a seeded 20% of the training images, with a warning.
  images, source = calibration_images(fake_run(digits, validation=False), None, lines.append)
  train = fake_run(digits, validation=False).split.train
  assert len(images) == stratified_mask(train.labels, 0.2, 0).sum()
  train = train.images
  assert 'seen in training' in source and 'pass --calibration_dir' in lines[0]
  train_rows = {image.tobytes() for image in train}
  assert all(image.tobytes() in train_rows for image in images)


def test_a_calibration_folder_is_decoded_to_the_model_size(digits, tmp_path):
  run = fake_run(digits, validation=False)
  (tmp_path / 'cats').mkdir()
  Image.fromarray(digits.test.images[0][..., 0]).save(tmp_path / 'cats' / 'a.png')
  Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / 'b.jpg')
  Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(tmp_path / 'c.png')
  (tmp_path / 'notes.txt').write_text('not an image')
  lines = []
  images, source = calibration_images(run, str(tmp_path), lines.append)
  assert images.shape == (3, 32, 32, 1)
  # Sorted paths: b.jpg, c.png, cats/a.png; a grey PNG at the model size comes back unchanged.
  np.testing.assert_array_equal(images[2], digits.test.images[0])
  assert source == f'3 images of --calibration_dir={tmp_path}'
  assert lines == ['calibration: skipped 1 of 4 files that are not readable images']
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UsageError, match='holds no files'):
    calibration_images(run, str(tmp_path / 'empty'))


def test_a_calibration_image_above_max_megapixels_is_named_and_never_decoded(digits, tmp_path,
                                                                             monkeypatch):
  run = fake_run(digits, validation=False)
  Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / 'a.png')  # 0.0024 MP
  Image.fromarray(np.zeros((300, 200, 3), np.uint8)).save(tmp_path / 'big.png')  # 0.06 MP
  decoded = []
  real = savedmodel.decode_files
  monkeypatch.setattr(savedmodel, 'decode_files',
                      lambda files, *args: (decoded.extend(files), real(files, *args))[1])
  lines = []
  images, source = calibration_images(run, str(tmp_path), lines.append, max_megapixels=0.05)
  assert len(images) == 1 and source == f'1 images of --calibration_dir={tmp_path}'
  assert decoded == [str(tmp_path / 'a.png')]
  assert lines == ['calibration: skipped 1 images of more than --max_megapixels=0.05, unread: '
                   f'{tmp_path / "big.png"}']
  with pytest.raises(UsageError, match=r'none of its 2 files is a readable image of at most '
                     r'--max_megapixels=0.001$'):
    calibration_images(run, str(tmp_path), lines.append, max_megapixels=0.001)
