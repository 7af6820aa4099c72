"""One hold-out run end to end (`train_and_evaluate`), and seeded trials of it (`run_trials`).

Each trial is a normal run in <root>/seed<k> (so an interrupted set of trials resumes where it
stopped), and <root>/aggregate.json summarises them as mean ± std (`tfanom.summaries`: the
population deviation, ddof=0, with every trial's value kept).
"""

import contextlib
import dataclasses
import os

import tensorflow as tf

from tfanom.config import TrainConfig
from tfanom.data.holdout import holdout_text
from tfanom.data.sources import load_split
from tfanom.models import network_name
from tfanom.errors import UsageError
from tfanom.io import write_json_atomic
from tfanom.summaries import STD_KIND, mean_std, text_table
from tfanom.training.distribute import make_strategy, strategy_name
from tfanom.training.loop import Trainer
from tfanom.training.results import build_results, final_metrics, summary_table
from tfanom.workdir import (AGGREGATE_FILE, CHECKPOINT_DIR, CONFIG_FILE, RESULTS_FILE,
                            TENSORBOARD_DIR, check_resumable, default_workdir, locked, prepare,
                            trials_root)


def train_and_evaluate(config: TrainConfig, log=print, stop_requested=lambda: False) -> dict:
  """Trains (or resumes) one hold-out run and writes `results.json` in its workdir.

  Raises `Preempted` (after saving a checkpoint) once `stop_requested()` returns True.
  """
  for name in config.ignored_settings():
    log(f'warning: --{name} is ignored by --dataset={config.dataset}')
  config = config.resolved()
  # Multi-worker collectives must be configured before any other TensorFlow work.
  strategy = make_strategy(config.strategy)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  split = load_split(config)
  workdir = config.workdir or default_workdir(config)
  trainer = Trainer(config, split, strategy, os.path.join(workdir, CHECKPOINT_DIR), log,
                    summary_dir=os.path.join(workdir, TENSORBOARD_DIR))
  # After the Trainer has checked every flag, so that a bad one is named as such rather than
  # reported as a difference from the workdir's settings.
  check_resumable(workdir, config)
  prepare(workdir)
  # Only the chief writes into the workdir, so only it holds the lock.
  with locked(workdir) if trainer.is_chief else contextlib.nullcontext():
    return _train(config, split, strategy, trainer, workdir, log, stop_requested)


def _train(config, split, strategy, trainer, workdir, log, stop_requested) -> dict:
  log(f'{config.dataset}: {holdout_text(split.holdout_index, split.holdout_name)}; '
      f'{len(split.train)} training images in {split.num_classes} classes, '
      f'{len(split.evaluation)} {"validation" if config.validation else "test"} examples; '
      f'{network_name(config)}, aux={config.aux}, strategy {strategy_name(config.strategy)} '
      f'with {strategy.num_replicas_in_sync} replica(s); workdir {workdir}')
  if trainer.is_chief:
    write_json_atomic(os.path.join(workdir, CONFIG_FILE), config.to_dict())
  trainer.restore()
  trainer.train(stop_requested)
  evaluations = trainer.evaluations
  if not evaluations:  # eval_every=0 and final_window=0: still report the trained model.
    evaluations = [dict(epoch=config.epochs, **trainer.evaluate()[0])]
  results = build_results(config, split.holdout_index, split.holdout_name, evaluations,
                          final_metrics(evaluations, config.epochs, config.final_window))
  if trainer.is_chief:
    write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)
    log(summary_table(results))
  return results


def trial_configs(config: TrainConfig, trials: int) -> list[TrainConfig]:
  """One config per trial: seeds --seed, --seed+1, ..., each in its own workdir subfolder."""
  if trials < 1:
    raise UsageError(f'--trials={trials} must be a positive integer')
  root = trials_root(config)
  return [dataclasses.replace(config, seed=seed, workdir=os.path.join(root, f'seed{seed}'))
          for seed in range(config.seed, config.seed + trials)]


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
  title = (f'{aggregate["dataset"]}, {holdout_text(**aggregate["holdout"])}, aux = {aggregate["aux"]}, {aggregate["trials"]} '
           f'trials (seeds {", ".join(map(str, aggregate["seeds"]))}), mean ± {aggregate["std"]} '
           f'std, skew {aggregate["last"]["skew"]["mean"]:.2f}%')
  rows = [('last evaluation', aggregate['last'])]
  if aggregate['final']:
    epochs = aggregate['final_epochs']
    rows.append((f'mean of epochs {epochs[0]}-{epochs[-1]}', aggregate['final']))
  return text_table(title, ['', 'accuracy', *(f'AP {s}' for s in scores)],
                    [[label, cell(values['accuracy']), *(cell(values['ap'][s]) for s in scores)]
                     for label, values in rows], [22] + [16] * (1 + len(scores)))


def run_trials(config: TrainConfig, trials: int, log=print, stop_requested=lambda: False) -> dict:
  """Trains (or resumes) every trial, then writes and returns `aggregate.json`."""
  configs = trial_configs(config, trials)
  results = []
  for number, trial in enumerate(configs, 1):
    log(f'trial {number}/{len(configs)}: seed {trial.seed}, workdir {trial.workdir}')
    results.append(train_and_evaluate(trial, log=log, stop_requested=stop_requested))
  aggregate = aggregate_results(results)
  write_json_atomic(os.path.join(trials_root(config), AGGREGATE_FILE), aggregate)
  log(aggregate_table(aggregate))
  return aggregate
