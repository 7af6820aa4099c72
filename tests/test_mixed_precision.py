"""The accelerator fast path: --mixed_precision and --xla train a tiny model and score like float32.

Tolerances (stated in docs/performance.md): on the same weights, XLA scores agree with the
graph path to 1e-4 and 16-bit scores to 0.03 in MSP (bfloat16 keeps 8 bits of mantissa in the trunk);
AP differs by at most 2 points. One epoch of training gives a classification loss within 0.02 of
float32's.
"""


import numpy as np
import pytest
import tensorflow as tf

from tfanom.anomaly import metrics
from tfanom.config import TrainConfig
from tfanom.data.holdout import make_holdout
from tfanom.data.sources import load_source
from tfanom.errors import UsageError
from tfanom.training.distribute import make_strategy
from tfanom.training.loop import Trainer

from tests.helpers import first_examples, half_side

_DIGITS = make_holdout(load_source('digits'), 0)
# float16 convolutions are emulated on CPUs: one epoch of the whole digits split took 260 s, half
# the suite's budget, and 512 images with 300 evaluation examples still 70 s. 128 training images (4
# steps of 32) and 200 evaluation examples compare every path on the same batches and examples.
SPLIT = first_examples(_DIGITS, 128, 200)


def make_trainer(**overrides):
  config = TrainConfig(dataset='digits', depth=10, width=1, epochs=1, learning_rate=0.01,
                       batch_size=32, strategy='default', **overrides).resolved()
  return Trainer(config, SPLIT, tf.distribute.get_strategy(), log=lambda *_: None)


@pytest.fixture(scope='module')
def reference():
  trainer = make_trainer()
  stats = trainer.train_epoch(0)
  return trainer, stats, trainer.evaluate()[1]


@pytest.mark.parametrize('overrides, score_tolerance', [
    # Compiling this step and the scoring functions took 16 s of CPU. XLA-compiled training and
    # scoring run in the default suite in
    # test_the_fast_network_trains_and_scores_in_bfloat16_with_xla below; this case adds the
    # rotation step under XLA and XLA's agreement with the graph to 1e-4.
    pytest.param(dict(xla=True), 1e-4, marks=pytest.mark.slow),
    # 10 s of CPU. The bfloat16 policy runs in the default suite in
    # test_the_fast_network_trains_and_scores_in_bfloat16_with_xla, a 16-bit policy through the
    # wide ResNet and its rotation step in the float16 case below; this case adds the wide ResNet
    # and rotation in bfloat16.
    pytest.param(dict(mixed_precision='bfloat16'), 0.03, marks=pytest.mark.slow),
    (dict(mixed_precision='float16'), 0.03),
])
def test_fast_paths_train_and_score_like_float32(reference, overrides, score_tolerance):
  float32, float32_stats, float32_scores = reference
  trainer = make_trainer(**overrides)
  stats = trainer.train_epoch(0)
  assert abs(stats['loss'] - float32_stats['loss']) < 0.02
  assert abs(stats['aux_loss'] - float32_stats['aux_loss']) < 0.02
  # The same weights, scored on this path: only the arithmetic differs.
  for mine, theirs in zip(trainer.model.variables, float32.model.variables):
    mine.assign(theirs)
  scores = trainer.evaluate()[1]
  is_anomaly = scores['label'] < 0
  np.testing.assert_array_equal(scores['label'], float32_scores['label'])
  for name in ('msp', 'odin'):
    assert scores[name].dtype == np.float32
    np.testing.assert_allclose(scores[name], float32_scores[name], atol=score_tolerance)
    ap = float(metrics.average_precision(is_anomaly, scores[name]))
    float32_ap = float(metrics.average_precision(is_anomaly, float32_scores[name]))
    assert abs(ap - float32_ap) <= 0.02


def test_unknown_precision_is_a_usage_error():
  with pytest.raises(UsageError, match='--mixed_precision=float8'):
    TrainConfig(mixed_precision='float8').resolved()


def test_xla_refuses_replicas_on_split_cpus():
  # XLA compiles for one CPU device; keras.Model.fit(jit_compile=True) fails the same way there.
  config = TrainConfig(dataset='digits', depth=10, width=1, strategy='mirrored',
                       xla=True).resolved()
  with pytest.raises(UsageError, match='--xla cannot compile for 2 replicas on CPU devices'):
    Trainer(config, SPLIT, make_strategy('mirrored'), log=lambda *_: None)


def test_the_fast_network_trains_and_scores_in_bfloat16_with_xla():
  # The fast network's own layers (patch whitening, GELU, max pooling, scale-free batch norm) in
  # bfloat16 under XLA. Without rotation, whose step in bfloat16 and under XLA is compared in
  # test_fast_paths_train_and_score_like_float32: with it, training took 21 s of CPU instead of
  # 11. Scores on 64 of the evaluation examples: scoring 200 with mirror TTA took 7 s per pass.
  # At 16x16 (bfloat16 is emulated on CPUs without AVX-512 BF16), float32's training and scoring
  # took 4 s of CPU instead of 9.
  split = half_side(first_examples(SPLIT, evaluation=64))

  def fast_trainer(**overrides):
    config = TrainConfig(dataset='digits', preset='fast', aux='none', epochs=1, batch_size=32,
                         learning_rate=0.01, augment='crop', tta='flip', strategy='default',
                         **overrides).resolved()
    return Trainer(config, split, tf.distribute.get_strategy(), log=lambda *_: None)

  float32, fast = fast_trainer(), fast_trainer(mixed_precision='bfloat16', xla=True)
  float32_stats, stats = float32.train_epoch(0), fast.train_epoch(0)
  assert abs(stats['loss'] - float32_stats['loss']) < 0.05
  for mine, theirs in zip(fast.model.variables, float32.model.variables):
    mine.assign(theirs)
  scores, float32_scores = fast.evaluate()[1], float32.evaluate()[1]
  assert len(scores['label']) == 64
  for name in ('msp', 'odin'):
    assert scores[name].dtype == np.float32
    np.testing.assert_allclose(scores[name], float32_scores[name], atol=0.03)
