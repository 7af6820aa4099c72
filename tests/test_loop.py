"""The epoch loop: training under each strategy, evaluation, resuming, the evaluation schedule,
progress lines and stop requests (honoured at the end of an epoch shorter than a loop)."""

import json
import random

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score

from tfanom.errors import UsageError
from tfanom.training.distribute import auto_strategy_name, make_strategy, strategy_name
from tfanom.training.loop import Preempted, Trainer, progress_line, should_evaluate
from tfanom.training.results import final_metrics
from tfanom.workdir import CONFIG_FILE, check_resumable

from tests.helpers import first_examples

STRATEGIES = ('default', 'onedevice', 'mirrored')
TRAIN_EXAMPLES = 384
# 16x16 crops of digits' 32x32 images: after the first traced calls an epoch took 0.6 s of CPU
# and an evaluation 0.24 s, against 2.0 s and 0.6 s on whole images (one intra-op thread).
CROP_SIZE = 16


def snapshot(variables):
  return [v.numpy().copy() for v in variables]


def model_state(trainer):
  return trainer.model.variables + trainer.aux_task.head.variables


@pytest.fixture(scope='module')
def split(digits_split):
  """TRAIN_EXAMPLES training images (6 steps an epoch at the tiny config's batch of 64) and 200
  evaluation examples, 20 of them anomalies: what these tests check needs no more."""
  return first_examples(digits_split, TRAIN_EXAMPLES, 200)


def train_stopped_and_resumed(config, split, strategy, checkpoints):
  """Two epochs in two trainers: the first stopped at the end of epoch 1, the second resumed from
  its checkpoint. What the resumption restored is recorded before the second trainer trains."""
  first = Trainer(config, split, strategy, checkpoints, log=lambda line: None)
  initial = snapshot(model_state(first))
  with pytest.raises(Preempted, match='stopped after epoch 1 of 2; a checkpoint is saved'):
    first.train(stop_requested=lambda: True)
  lines = []
  resumed = Trainer(config, split, strategy, checkpoints, log=lines.append)
  restored = dict(
      latest_checkpoint=tf.train.latest_checkpoint(checkpoints), epochs=resumed.restore(),
      evaluations=[e['epoch'] for e in resumed.evaluations],
      state=[(v.path, v.numpy().copy(), r.numpy()) for v, r in
             zip(model_state(resumed), model_state(first))],
      optimizers={name: (int(getattr(resumed.steps, name).iterations),
                         int(getattr(first.steps, name).iterations),
                         snapshot(getattr(resumed.steps, name).variables),
                         snapshot(getattr(first.steps, name).variables))
                  for name in ('cls_optimizer', 'aux_optimizer')})
  resumed.train()
  stats = [first.evaluations[0]['train'], resumed.evaluations[1]['train']]
  return resumed, initial, stats, dict(restored, lines=lines)


@pytest.fixture(scope='module')
def strategy_runs(split, make_config, tmp_path_factory):
  """The same tiny run under each strategy, then evaluated: two epochs uninterrupted under the
  default strategy; two under one device, stopped after the first and resumed in another trainer
  (a stopped run resumes as if never stopped: test_a_stopped_run_resumes_from_the_saved_epoch);
  one epoch mirrored. Each trainer is built in another random state of the process
  (test_seed_alone_decides_the_initial_weights). A trainer's first traced calls of training and
  evaluation take most of its time (7.6 of the 13 s of CPU of two epochs and an evaluation on
  whole images, one intra-op thread), hence the one trainer for the uninterrupted reference and
  the strategies' comparison."""
  runs = {}
  for unrelated_seed, name in enumerate(STRATEGIES):
    random.seed(unrelated_seed)  # whatever random state the process is in
    np.random.seed(unrelated_seed)
    tf.random.set_seed(unrelated_seed)
    strategy = make_strategy(name)
    # 127 leaves a last evaluation batch of 73, split unevenly between mirrored replicas. A loop
    # of 50 steps is longer than the epochs of 6: a stop request is still honoured at the end of
    # the first epoch, with its checkpoint.
    config = make_config(strategy=name, eval_batch_size=127, eval_every=1, steps_per_loop=50,
                         crop_size=CROP_SIZE)
    resumption = None
    if name == 'onedevice':
      trainer, initial, stats, resumption = train_stopped_and_resumed(
          config, split, strategy, str(tmp_path_factory.mktemp('resumed') / 'checkpoints'))
    else:
      trainer = Trainer(config, split, strategy, log=lambda line: None)
      initial = snapshot(model_state(trainer))
      if name == 'default':
        trainer.train()
        stats = [evaluation['train'] for evaluation in trainer.evaluations]
      else:
        stats = [trainer.train_epoch(0)]
    runs[name] = dict(trainer=trainer, initial=initial, stats=stats, resumption=resumption,
                      evaluation=trainer.evaluate(), replicas=strategy.num_replicas_in_sync)
  return runs


def test_a_tpu_strategy_without_a_tpu_is_one_line():
  with pytest.raises(UsageError, match=r'^--strategy=tpu found no TPU \(.*\): use another '
                     r'--strategy$'):
    make_strategy('tpu')


def test_mirrored_strategy_has_two_replicas_on_the_split_cpu():
  assert len(tf.config.list_logical_devices('CPU')) == 2
  assert make_strategy('mirrored').num_replicas_in_sync == 2


def test_auto_strategy_mirrors_over_two_devices_only():
  assert auto_strategy_name(['/device:CPU:0']) == 'default'
  assert auto_strategy_name(['/device:GPU:0', '/device:GPU:1']) == 'mirrored'
  # This process has two logical CPUs: auto is the one MirroredStrategy, not a second instance
  # over the same devices (their collectives would clash).
  assert strategy_name('auto') == 'mirrored'
  assert make_strategy('auto') is make_strategy('mirrored')


@pytest.mark.parametrize('name', STRATEGIES)
def test_training_under_each_strategy_is_finite(strategy_runs, name):
  run = strategy_runs[name]
  assert run['replicas'] == (2 if name == 'mirrored' else 1)
  for stats in run['stats']:
    assert set(stats) == {'loss', 'accuracy', 'aux_loss', 'aux_accuracy'}
    assert all(np.isfinite(value) for value in stats.values())


def test_loss_falls(strategy_runs, split):
  first, second = strategy_runs['default']['stats']
  # On these 384 images' 16x16 crops the second epoch's mean loss was 0.935-0.969 times the
  # first's, the rotation loss 0.03-0.09 lower and the accuracy 19.5-25.8% (seeds 0-2, one and two
  # intra-op threads).
  assert second['loss'] < 0.98 * first['loss']
  assert second['aux_loss'] < first['aux_loss']
  assert second['accuracy'] > 100.0 / split.num_classes  # above chance


@pytest.mark.parametrize('name', STRATEGIES)
def test_evaluation_scores_every_example_in_order(strategy_runs, split, name):
  summary, arrays = strategy_runs[name]['evaluation']
  np.testing.assert_array_equal(arrays['label'], split.evaluation.labels)
  assert summary['num_examples'] == len(split.evaluation)
  assert summary['num_anomalies'] == int(split.is_anomaly.sum())
  for key in ('msp', 'odin'):
    assert arrays[key].shape == arrays['label'].shape and np.all(np.isfinite(arrays[key]))
    # Streamed through the Keras metric, batch by batch: exact, as scikit-learn's.
    assert summary['ap'][key] == pytest.approx(
        100 * average_precision_score(arrays['label'] < 0, arrays[key]), abs=1e-9)
  assert arrays['prediction'].min() >= 0 and arrays['prediction'].max() < split.num_classes


def test_seed_alone_decides_the_initial_weights(strategy_runs, split, make_config):
  # strategy_runs built each trainer in another random state of the process.
  default = strategy_runs['default']['initial']
  for name in ('onedevice', 'mirrored'):
    assert len(strategy_runs[name]['initial']) == len(default)
    for initial, reference in zip(strategy_runs[name]['initial'], default):
      np.testing.assert_array_equal(initial, reference)
  other = Trainer(make_config(seed=1), split, make_strategy('default'),
                  log=lambda line: None)
  assert not np.array_equal(other.aux_task.head.kernel.numpy(), default[-2])


def test_strategies_agree(strategy_runs):
  # Their initial weights are the same: test_seed_alone_decides_the_initial_weights.
  default = strategy_runs['default']
  # One device: the same computation (its second epoch in a resumed trainer).
  assert len(strategy_runs['onedevice']['stats']) == len(default['stats']) == 2
  for stats, reference in zip(strategy_runs['onedevice']['stats'], default['stats']):
    assert stats['loss'] == pytest.approx(reference['loss'], rel=1e-4)
  # Two replicas: the same update up to batch statistics computed per replica (on half batches),
  # which moves the first epoch's mean loss by a few percent.
  for stats, reference in zip(strategy_runs['mirrored']['stats'], default['stats']):
    assert stats['loss'] == pytest.approx(reference['loss'], rel=0.1)
    assert stats['aux_loss'] == pytest.approx(reference['aux_loss'], rel=0.1)


def test_a_stopped_run_resumes_from_the_saved_epoch(strategy_runs):
  run = strategy_runs['onedevice']
  resumed, restored = run['trainer'], run['resumption']
  assert restored['latest_checkpoint'].endswith(f'ckpt-{resumed.steps_per_epoch}')
  assert restored['epochs'] == 1
  for path, variable, reference in restored['state']:
    np.testing.assert_array_equal(variable, reference, err_msg=path)
  for restored_iterations, iterations, variables, references in restored['optimizers'].values():
    assert restored_iterations == iterations == resumed.steps_per_epoch
    assert len(variables) == len(references)
    for variable, reference in zip(variables, references):
      np.testing.assert_array_equal(variable, reference)
  assert restored['evaluations'] == [1]

  lines = restored['lines']
  assert any(line.startswith('resumed from') for line in lines)
  assert not any(line.startswith('epoch 1/2') for line in lines)
  assert [e['epoch'] for e in resumed.evaluations] == [1, 2]
  assert int(resumed.steps.cls_optimizer.iterations) == 2 * resumed.steps_per_epoch
  # The same weights as two uninterrupted epochs (same seed, same batches, same schedule; one
  # device computes what the default strategy does).
  uninterrupted = strategy_runs['default']['trainer']
  for variable, reference in zip(resumed.model.trainable_variables,
                                 uninterrupted.model.trainable_variables):
    np.testing.assert_allclose(variable.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5,
                               err_msg=variable.path)


def test_workdir_with_other_settings_is_refused(tmp_path, make_config):
  config = make_config(workdir=str(tmp_path))
  (tmp_path / CONFIG_FILE).write_text(json.dumps(config.to_dict()))
  check_resumable(str(tmp_path), config)
  # Settings that do not change the result may differ on resumption.
  check_resumable(str(tmp_path), make_config(workdir='elsewhere', strategy='mirrored',
                                                  steps_per_loop=7, eval_batch_size=50))
  with pytest.raises(UsageError, match=r"epochs=2 there, 3 now.*use another --workdir"):
    check_resumable(str(tmp_path), make_config(workdir=str(tmp_path), epochs=3))


def test_final_metrics_average_the_last_window():
  evaluations = [dict(epoch=e, accuracy=10.0 * e, skew=5.0, ap=dict(msp=e, odin=2 * e))
                 for e in (2, 4, 5, 6)]
  final = final_metrics(evaluations, epochs=6, window=3)
  assert final == dict(epochs=[4, 5, 6], accuracy=50.0, skew=5.0, ap=dict(msp=5.0, odin=10.0))
  assert final_metrics(evaluations, epochs=6, window=0) == {}


@pytest.mark.parametrize('eval_every,final_window,expected', [
    (1, 0, [1, 2, 3, 4, 5]), (2, 0, [2, 4]), (0, 2, [4, 5]), (2, 2, [2, 4, 5]), (0, 0, [])])
def test_evaluation_schedule(eval_every, final_window, expected, make_config):
  config = make_config(epochs=5, eval_every=eval_every, final_window=final_window)
  assert [e + 1 for e in range(5) if should_evaluate(config, e)] == expected


def test_progress_line_gives_mean_losses_and_accuracies(make_config):
  # 40 examples with summed loss 20 and 30 right; 20 rotated images, summed loss 8, 10 right.
  totals = np.array([20.0, 30.0, 40.0, 8.0, 10.0, 20.0])
  line = progress_line(make_config(epochs=5), 1, 3, 9, totals, 'rotation', 0.1, 123.4)
  assert line == ('epoch 2/5 step 3/9 loss 0.5000 acc 75.00% | rotation loss 0.4000 acc 50.00% '
                  '| lr 0.1 | 123 img/s')
  totals[3:] = 0  # --aux=none
  assert progress_line(make_config(epochs=5), 1, 3, 9, totals, None, 0.1, 123.4) == (
      'epoch 2/5 step 3/9 loss 0.5000 acc 75.00% | lr 0.1 | 123 img/s')
