"""Seeded trials of one configuration, summarised as mean ± standard deviation.

The paper reports "mean ± standard deviation over 3 trials" without saying which deviation; this
module reports the population one (numpy's default, ddof=0). Over 3 trials the sample deviation
(ddof=1) would be sqrt(3/2) = 1.22 times larger; `values` keeps every trial's number. Each trial is a normal run in WORKDIR/seed<k> (so an interrupted
set of trials resumes where it stopped), and WORKDIR/aggregate.json summarises them.
"""

import dataclasses
import os

import numpy as np

from tfanom.config import TrainConfig
from tfanom.errors import UsageError
from tfanom.results import write_json_atomic
from tfanom.training import train_and_evaluate

AGGREGATE_FILE = 'aggregate.json'
STD_DDOF = 0
STD_KIND = 'population (ddof=0)'


def trials_workdir(config: TrainConfig) -> str:
  return config.workdir or os.path.join('runs', config.dataset,
                                        f'holdout{config.holdout}_{config.aux}_trials')


def trial_configs(config: TrainConfig, trials: int) -> list[TrainConfig]:
  """One config per trial: seeds --seed, --seed+1, ..., each in its own workdir subfolder."""
  if trials < 1:
    raise UsageError(f'--trials={trials} must be a positive integer')
  root = trials_workdir(config)
  return [dataclasses.replace(config, seed=seed, workdir=os.path.join(root, f'seed{seed}'))
          for seed in range(config.seed, config.seed + trials)]


def mean_std(values) -> dict:
  values = [float(v) for v in values]
  return dict(mean=float(np.mean(values)), std=float(np.std(values, ddof=STD_DDOF)),
              values=values)


def aggregate_metrics(per_trial: list[dict]) -> dict:
  """Mean ± std of accuracy, skew and the AP of every score over the trials' metric dicts."""
  return dict(
      accuracy=mean_std([m['accuracy'] for m in per_trial]),
      skew=mean_std([m['skew'] for m in per_trial]),
      ap={score: mean_std([m['ap'][score] for m in per_trial]) for score in per_trial[0]['ap']})


def aggregate_results(results: list[dict]) -> dict:
  """`aggregate.json` from the trials' results.json dicts: the last evaluation and `final`."""
  first = results[0]
  finals = [r['final'] for r in results]
  return dict(
      dataset=first['dataset'],
      holdout=first['holdout'],
      aux=first['aux'],
      evaluated_on=first['evaluated_on'],
      trials=len(results),
      seeds=[r['seed'] for r in results],
      std=STD_KIND,
      last=aggregate_metrics(results),
      final=aggregate_metrics(finals) if all(finals) else {},
      final_epochs=finals[0].get('epochs', []))


def aggregate_table(aggregate: dict) -> str:
  """A plain-text table of mean ± std for the last evaluation and the final-window average."""
  scores = list(aggregate['last']['ap'])
  cell = lambda stat: f'{stat["mean"]:.2f} ± {stat["std"]:.2f}'  # noqa: E731
  header = f'{"":<22}{"accuracy":>16}' + ''.join(f'{"AP " + s:>16}' for s in scores)
  lines = [f'{aggregate["dataset"]}, anomaly = class {aggregate["holdout"]["index"]} '
           f'({aggregate["holdout"]["name"]}), aux = {aggregate["aux"]}, {aggregate["trials"]} '
           f'trials (seeds {", ".join(map(str, aggregate["seeds"]))}), mean ± {aggregate["std"]} '
           f'std, skew {aggregate["last"]["skew"]["mean"]:.2f}%', header]
  rows = [('last evaluation', aggregate['last'])]
  if aggregate['final']:
    epochs = aggregate['final_epochs']
    rows.append((f'mean of epochs {epochs[0]}-{epochs[-1]}', aggregate['final']))
  for label, values in rows:
    lines.append(f'{label:<22}{cell(values["accuracy"]):>16}'
                 + ''.join(f'{cell(values["ap"][s]):>16}' for s in scores))
  return '\n'.join(lines)


def run_trials(config: TrainConfig, trials: int, log=print, stop_requested=lambda: False) -> dict:
  """Trains (or resumes) every trial, then writes and returns `aggregate.json`."""
  configs = trial_configs(config, trials)
  results = []
  for number, trial in enumerate(configs, 1):
    log(f'trial {number}/{len(configs)}: seed {trial.seed}, workdir {trial.workdir}')
    results.append(train_and_evaluate(trial, log=log, stop_requested=stop_requested))
  aggregate = aggregate_results(results)
  write_json_atomic(os.path.join(trials_workdir(config), AGGREGATE_FILE), aggregate)
  log(aggregate_table(aggregate))
  return aggregate
