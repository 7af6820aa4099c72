"""The epoch loop: training under each strategy, evaluation, resuming, the evaluation schedule,
progress lines and stop requests (honoured at the end of an epoch shorter than a loop)."""

import json
import random

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score

from tfanom.errors import UsageError
from tfanom.training.distribute import make_strategy
from tfanom.training.loop import Preempted, Trainer, progress_line, should_evaluate
from tfanom.training.results import final_metrics
from tfanom.workdir import CONFIG_FILE, check_resumable

from tests.helpers import first_examples

STRATEGIES = ('default', 'onedevice', 'mirrored')
TRAIN_EXAMPLES = 384


def snapshot(variables):
  return [v.numpy().copy() for v in variables]


def model_state(trainer):
  return trainer.model.variables + trainer.aux_task.head.variables


@pytest.fixture(scope='module')
def split(digits_split):
  """TRAIN_EXAMPLES training images (6 steps an epoch at the tiny config's batch of 64) and 200
  evaluation examples, 20 of them anomalies: what these tests check needs no more."""
  return first_examples(digits_split, TRAIN_EXAMPLES, 200)


@pytest.fixture(scope='module')
def strategy_runs(split, make_config):
  """The same tiny run under each strategy (two epochs by default, else one), then evaluated."""
  runs = {}
  for name in STRATEGIES:
    strategy = make_strategy(name)
    # 127 leaves a last evaluation batch of 73, split unevenly between mirrored replicas.
    trainer = Trainer(make_config(strategy=name, eval_batch_size=127), split, strategy,
                      log=lambda line: None)
    initial = snapshot(model_state(trainer))
    stats = [trainer.train_epoch(epoch) for epoch in range(2 if name == 'default' else 1)]
    runs[name] = dict(trainer=trainer, initial=initial, stats=stats,
                      evaluation=trainer.evaluate(), replicas=strategy.num_replicas_in_sync)
  return runs


def test_a_tpu_strategy_without_a_tpu_is_one_line():
  with pytest.raises(UsageError, match=r'^--strategy=tpu found no TPU \(.*\): use another '
                     r'--strategy$'):
    make_strategy('tpu')


def test_mirrored_strategy_has_two_replicas_on_the_split_cpu():
  assert len(tf.config.list_logical_devices('CPU')) == 2
  assert make_strategy('mirrored').num_replicas_in_sync == 2


@pytest.mark.parametrize('name', STRATEGIES)
def test_training_under_each_strategy_is_finite(strategy_runs, name):
  run = strategy_runs[name]
  assert run['replicas'] == (2 if name == 'mirrored' else 1)
  for stats in run['stats']:
    assert set(stats) == {'loss', 'accuracy', 'aux_loss', 'aux_accuracy'}
    assert all(np.isfinite(value) for value in stats.values())


def test_loss_falls(strategy_runs, split):
  first, second = strategy_runs['default']['stats']
  # On these 384 images the second epoch's mean loss was 0.909 and 0.921 times the first's (seeds
  # 0 and 1, one and two intra-op threads; 0.945 on 256 images).
  assert second['loss'] < 0.96 * first['loss']
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


def test_seed_alone_decides_the_initial_weights(split, make_config):
  states = []
  for unrelated_seed in (1, 2):  # whatever random state the process is in
    random.seed(unrelated_seed)
    np.random.seed(unrelated_seed)
    tf.random.set_seed(unrelated_seed)
    trainer = Trainer(make_config(), split, make_strategy('default'),
                      log=lambda line: None)
    states.append(snapshot(model_state(trainer)))
  for first, second in zip(*states):
    np.testing.assert_array_equal(first, second)
  other = Trainer(make_config(seed=1), split, make_strategy('default'),
                  log=lambda line: None)
  assert not np.array_equal(other.aux_task.head.kernel.numpy(), states[0][-2])


def test_strategies_agree(strategy_runs):
  default = strategy_runs['default']
  for name in ('onedevice', 'mirrored'):
    assert len(strategy_runs[name]['initial']) == len(default['initial'])
    for initial, reference in zip(strategy_runs[name]['initial'], default['initial']):
      np.testing.assert_array_equal(initial, reference)
  # One device: the same computation.
  for stats, reference in zip(strategy_runs['onedevice']['stats'], default['stats']):
    assert stats['loss'] == pytest.approx(reference['loss'], rel=1e-4)
  # Two replicas: the same update up to batch statistics computed per replica (on half batches),
  # which moves the first epoch's mean loss by a few percent.
  for stats, reference in zip(strategy_runs['mirrored']['stats'], default['stats']):
    assert stats['loss'] == pytest.approx(reference['loss'], rel=0.1)
    assert stats['aux_loss'] == pytest.approx(reference['aux_loss'], rel=0.1)


def test_a_stopped_run_resumes_from_the_saved_epoch(strategy_runs, split, make_config, tmp_path):
  # A loop of 50 steps is longer than the epochs of 6: a stop request is still honoured at the end
  # of the first epoch, with its checkpoint.
  config = make_config(eval_every=1, steps_per_loop=50)
  checkpoints = str(tmp_path / 'checkpoints')
  strategy = make_strategy('default')
  first = Trainer(config, split, strategy, checkpoints, log=lambda line: None)
  with pytest.raises(Preempted, match='stopped after epoch 1 of 2; a checkpoint is saved'):
    first.train(stop_requested=lambda: True)
  assert tf.train.latest_checkpoint(checkpoints).endswith(f'ckpt-{first.steps_per_epoch}')

  lines = []
  resumed = Trainer(config, split, strategy, checkpoints, log=lines.append)
  assert resumed.restore() == 1
  for variable, reference in zip(model_state(resumed), model_state(first)):
    np.testing.assert_array_equal(variable.numpy(), reference.numpy(), err_msg=variable.path)
  for optimizer in ('cls_optimizer', 'aux_optimizer'):
    restored, original = getattr(resumed.steps, optimizer), getattr(first.steps, optimizer)
    assert int(restored.iterations) == int(original.iterations) == resumed.steps_per_epoch
    for variable, reference in zip(restored.variables, original.variables):
      np.testing.assert_array_equal(variable.numpy(), reference.numpy())
  assert [e['epoch'] for e in resumed.evaluations] == [1]

  resumed.train()
  assert any(line.startswith('resumed from') for line in lines)
  assert not any(line.startswith('epoch 1/2') for line in lines)
  assert [e['epoch'] for e in resumed.evaluations] == [1, 2]
  assert int(resumed.steps.cls_optimizer.iterations) == 2 * resumed.steps_per_epoch
  # The same weights as two uninterrupted epochs (same seed, same batches, same schedule).
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
