"""Seeded trials and their mean ± standard deviation (aggregate.json)."""

import json
import math
import re

import pytest

from tfanom.config import TrainConfig
from tfanom.errors import UsageError
from tfanom.training import run
from tfanom.training.run import aggregate_results, aggregate_table, trial_configs

from tests.helpers import first_examples


def fake_results(seed, accuracy, msp, odin, final_msp):
  final = dict(epochs=[9, 10], accuracy=accuracy - 1, skew=10.0,
               ap=dict(msp=final_msp, odin=odin + 1))
  return dict(dataset='cifar10', holdout=dict(index=3, name='cat'), aux='rotation', seed=seed,
              evaluated_on='test', accuracy=accuracy, skew=10.0, ap=dict(msp=msp, odin=odin),
              final=final)


def test_aggregate_is_mean_and_population_std():
  results = [fake_results(0, 90.0, 30.0, 40.0, 31.0), fake_results(1, 92.0, 33.0, 40.0, 31.0),
             fake_results(2, 94.0, 36.0, 43.0, 34.0)]
  aggregate = aggregate_results(results)
  assert aggregate['seeds'] == [0, 1, 2] and aggregate['trials'] == 3
  last, final = aggregate['last'], aggregate['final']
  assert last['accuracy']['mean'] == pytest.approx(92.0)
  assert last['accuracy']['std'] == pytest.approx(math.sqrt(8 / 3))
  assert last['accuracy']['values'] == [90.0, 92.0, 94.0]
  assert last['ap']['msp']['std'] == pytest.approx(math.sqrt(6))
  assert last['ap']['odin']['mean'] == pytest.approx(41.0)
  assert last['ap']['odin']['std'] == pytest.approx(math.sqrt(2))
  assert last['skew'] == dict(mean=10.0, std=0.0, values=[10.0] * 3)
  assert final['accuracy']['mean'] == pytest.approx(91.0)
  assert final['ap']['msp']['mean'] == pytest.approx(32.0)
  assert final['ap']['msp']['std'] == pytest.approx(math.sqrt(2))
  assert aggregate['final_epochs'] == [9, 10]
  table = aggregate_table(aggregate)
  assert '92.00 ± 1.63' in table and '32.00 ± 1.41' in table and 'epochs 9-10' in table


def test_trial_configs_seed_their_own_workdirs(tmp_path):
  configs = trial_configs(TrainConfig(seed=5, workdir=str(tmp_path)), 3)
  assert [c.seed for c in configs] == [5, 6, 7]
  assert [c.workdir for c in configs] == [str(tmp_path / f'seed{s}') for s in (5, 6, 7)]
  with pytest.raises(UsageError, match='--trials=0'):
    trial_configs(TrainConfig(), 0)


def test_cli_runs_trials_and_aggregates_their_results(tmp_path, train_command, capsys,
                                                      monkeypatch):
  # Trials are what is checked, not learning: each trains one step of 128 images without the
  # auxiliary task and is evaluated on 100 examples (the first command took 8.6 s of CPU so, 10.1 s
  # with two steps and 200 examples).
  load_split = run.load_split
  monkeypatch.setattr(run, 'load_split',
                      lambda config: first_examples(load_split(config), 128, 100))
  args = ['--dataset=digits', '--trials=2', '--epochs=1', '--depth=10', '--width=1',
          '--batch_size=128', '--final_window=1', '--strategy=default', '--aux=none',
          f'--workdir={tmp_path}']
  train_command(args)
  results = [json.loads((tmp_path / f'seed{s}' / 'results.json').read_text()) for s in (0, 1)]
  aggregate = json.loads((tmp_path / 'aggregate.json').read_text())
  assert [r['seed'] for r in results] == aggregate['seeds'] == [0, 1]
  assert results[0]['ap']['msp'] != results[1]['ap']['msp']  # the seeds differ
  for score in ('msp', 'odin'):
    assert aggregate['last']['ap'][score]['values'] == [r['ap'][score] for r in results]
    assert aggregate['final']['ap'][score]['mean'] == pytest.approx(
        sum(r['final']['ap'][score] for r in results) / 2)
  assert 'mean ± population (ddof=0) std' in capsys.readouterr().out
  # The same command again, with trial 2's results and the aggregate lost: each trial resumes
  # from its checkpoint (none retrains) and the aggregate is written again, the same.
  (tmp_path / 'seed1' / 'results.json').unlink()
  (tmp_path / 'aggregate.json').unlink()
  train_command(args)
  lines = capsys.readouterr().out.splitlines()
  resumed = [line for line in lines if line.startswith('resumed from')]
  assert len(resumed) == 2
  for seed, line in zip((0, 1), resumed):
    assert re.match(rf'resumed from {tmp_path / f"seed{seed}" / "checkpoints"}/ckpt-\d+: 1 of 1 '
                    'epochs done', line), line
  assert not any(line.startswith('epoch ') for line in lines)
  assert json.loads((tmp_path / 'aggregate.json').read_text()) == aggregate


class Stop(Exception):
  """Ends train_and_evaluate before it builds anything."""


def test_each_setting_the_dataset_ignores_is_one_warning_line(monkeypatch):
  def stop(name):
    raise Stop(name)

  monkeypatch.setattr(run, 'make_strategy', stop)
  lines = []
  with pytest.raises(Stop):
    run.train_and_evaluate(TrainConfig(dataset='digits', data_dir='/data', skip_corrupt=True),
                           lines.append)
  assert lines == ['warning: --data_dir is ignored by --dataset=digits',
                   'warning: --skip_corrupt is ignored by --dataset=digits']
