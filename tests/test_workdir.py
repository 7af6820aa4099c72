"""One naming scheme for the workdirs of runs, trials, sweeps and baselines."""

import dataclasses
import os

from experiments import sweeps
from tfanom.baselines import BaselineConfig
from tfanom.config import TrainConfig
from tfanom.training.run import trial_configs
from tfanom.workdir import baseline_workdir, default_workdir, run_path, trials_root


def test_a_trial_lives_where_the_same_run_alone_and_in_a_sweep_lives():
  config = TrainConfig(dataset='cifar10', holdout='3', aux='rotation', seed=1)
  assert default_workdir(config) == os.path.join('runs', 'cifar10', 'holdout3', 'rotation',
                                                 'seed1')
  trials = trial_configs(dataclasses.replace(config, seed=0), 3)
  assert [t.workdir for t in trials] == [
      default_workdir(dataclasses.replace(config, seed=s)) for s in (0, 1, 2)]
  assert trials_root(config) == os.path.dirname(default_workdir(config))
  sweep_run = next(run for run in sweeps.expand('table3') if run.settings['holdout'] == '3'
                   and run.settings['aux'] == 'rotation' and run.settings['seed'] == 1)
  assert os.path.join('runs', sweep_run.workdir) == default_workdir(config)


def test_baselines_share_the_scheme():
  config = BaselineConfig(dataset='cifar10', holdout='all', method='edge_energy')
  assert baseline_workdir(config.dataset, config.holdout, config.method) == os.path.join(
      'runs', run_path('cifar10', 'all', 'baseline_edge_energy'))
