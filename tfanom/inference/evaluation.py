"""Scores a trained model's whole evaluation set with every anomaly score and writes the metrics.

`evaluate` restores the latest checkpoint of a workdir (or loads an export), fits the feature
statistics that the feature scores need on the training split (cached in the workdir),
scores every evaluation example in batches with the evaluator that training's evaluation runs
(`tfanom.inference.evaluator.Evaluator`) and writes, in the workdir, `eval.json` (AP, AUROC,
AUPR-In and FPR at 95% TPR per score, all in percent with anomalies positive; the same AP and AUROC
against the correctly classified known examples only, and the score's AUROC of misclassified
against correct known examples, `tfanom.anomaly.metrics.masking`; accuracy; skew) and
`scores.npz` (per-example scores, `label`, `is_anomaly`, `prediction`).
"""

import dataclasses
import json
import os

import numpy as np

from tfanom.anomaly import FEATURE_SCORES, ROTATION_SCORES, SCORES, available_scores, metrics
from tfanom.anomaly.scores import KNN_K, odin_unit_step
from tfanom.config import check_settings, setting
from tfanom.data.holdout import holdout_text
from tfanom.data.sources import load_split
from tfanom.errors import UsageError
from tfanom.inference.savedmodel import load_export
from tfanom.inference.features import file_fingerprint
from tfanom.inference.restore import (data_dir_override, load_run,
                                      odin_epsilon_override, odin_temperature_override)
from tfanom.inference.scorer import ScoringModule
from tfanom.inference.evaluator import feature_statistics, score_images
from tfanom.io import write_json_atomic, write_npz_atomic
from tfanom.summaries import text_table
from tfanom.workdir import (CONFIG_FILE, EVAL_FILE, FEATURE_CACHE_FILE, SCORES_FILE,
                            config_from_json, unfinished_warning)

METRIC_COLUMNS = (('ap', 'AP'), ('auroc', 'AUROC'), ('aupr_in', 'AUPR-In'), ('fpr95', 'FPR95'),
                  ('ap_correct_only', 'APc'), ('auroc_correct_only', 'AUROCc'),
                  ('misclassification_auroc', 'errAUROC'))
LOWER_IS_BETTER = ('fpr95',)
# Ranking errors well is no merit for an anomaly score: the column is a diagnostic, unmarked.
UNRANKED = ('misclassification_auroc',)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What `python -m tfanom.evaluate` scores; its flags are these fields."""
  workdir: str | None = setting(None, 'The training run to evaluate; eval.json, scores.npz and the '
                                'feature cache are written there. With --export_dir, a folder for '
                                "the export's results, which may not be a training run's.",
                                required=True)
  export_dir: str | None = setting(None, 'Evaluate this exported SavedModel (a version folder '
                                   'written by tfanom.export) instead of the checkpoint in '
                                   '--workdir.')
  scores: tuple[str, ...] = setting((), 'Scores to compute (comma-separated); default all that '
                                    f'apply: {",".join(SCORES)}.', choices=SCORES)
  data_dir: str | None = data_dir_override()
  batch_size: int | None = setting(None, "Images per batch; default the run's evaluation batch.",
                                   minimum=1)
  odin_temperature: float | None = odin_temperature_override()
  odin_epsilon: float | None = odin_epsilon_override()
  knn_k: int = setting(KNN_K, 'Neighbour whose distance is the KNN score (capped at the '
                       'number of training images).', minimum=1)

  def check(self):
    check_settings(self)


def evaluate(config: EvalConfig, log=print) -> dict:
  """Scores the evaluation set of a run (or export); writes eval.json and scores.npz."""
  config.check()
  if config.export_dir:
    if os.path.exists(os.path.join(config.workdir, CONFIG_FILE)):
      raise UsageError(f'--workdir={config.workdir} is a training run, whose {EVAL_FILE} and '
                       f'{SCORES_FILE} belong to its own checkpoint: pass another --workdir for '
                       f'the results of --export_dir={config.export_dir}')
    module = load_export(config.export_dir)
    run_config = config_from_json(module.config_json.numpy().decode())
    if config.data_dir is not None:
      run_config = dataclasses.replace(run_config, data_dir=config.data_dir)
    split = load_split(run_config)
    fingerprint = file_fingerprint([
        os.path.join(config.export_dir, 'saved_model.pb'),
        os.path.join(config.export_dir, 'variables', 'variables.index')])
    model_path, model_source = config.export_dir, dict(export_dir=config.export_dir)
  else:
    run = load_run(config.workdir, config.data_dir)
    warning = unfinished_warning(config.workdir, run.checkpoint)
    if warning:
      log(warning)
    run_config, split = run.config, run.split
    module = ScoringModule(run, run_config.odin_temperature,
                           odin_unit_step(run_config.odin_epsilon, run_config.odin_step))
    fingerprint = file_fingerprint([run.checkpoint + '.index'])
    model_path, model_source = run.checkpoint, dict(checkpoint=run.checkpoint)
  has_rotation = hasattr(module, 'rotation_scores')
  names = config.scores or available_scores(has_rotation)
  rotation_names = [name for name in names if name in ROTATION_SCORES]
  if rotation_names and not has_rotation:
    raise UsageError(f'--scores={",".join(rotation_names)} needs a rotation head, but this model '
                     f'was trained with --aux={run_config.aux}: leave {",".join(rotation_names)} '
                     'out of --scores')
  settings = dict(
      batch_size=config.batch_size or run_config.eval_batch_size,
      odin_temperature=(run_config.odin_temperature if config.odin_temperature is None
                        else config.odin_temperature),
      odin_epsilon=(run_config.odin_epsilon if config.odin_epsilon is None
                    else config.odin_epsilon),
      odin_step=run_config.odin_step)
  log(f'{run_config.dataset}: {holdout_text(split.holdout_index, split.holdout_name)}; '
      f'model {model_path}; scores {", ".join(names)}')

  statistics = None
  if any(name in FEATURE_SCORES for name in names):
    statistics = feature_statistics(module, split, settings['batch_size'], fingerprint,
                                    os.path.join(config.workdir, FEATURE_CACHE_FILE), log)
    settings['knn_k'] = min(config.knn_k, len(statistics.bank))
  evaluated_on = 'validation' if run_config.validation else 'test'
  kept = kept_results(config.workdir, model_source, settings, evaluated_on, names)
  unit_step = odin_unit_step(settings['odin_epsilon'], settings['odin_step'])
  arrays = score_images(module, split.evaluation.images, names, statistics,
                        dict(settings, odin_epsilon=unit_step), f'scoring {evaluated_on} examples',
                        log)
  arrays.update(label=split.evaluation.labels, is_anomaly=split.is_anomaly)
  report = dict(
      model=model_source,
      dataset=run_config.dataset,
      holdout=dict(index=split.holdout_index, name=split.holdout_name),
      aux=run_config.aux,
      evaluated_on=evaluated_on,
      **metrics.classification_summary(arrays['label'], arrays['prediction']),
      settings=settings,
      # Without a held-out class (--holdout=none) there is nothing to rank: accuracy only.
      scores=metrics.score_metrics(arrays['label'], arrays['prediction'],
                                   {name: arrays[name] for name in names}))
  if kept:
    merged = {**kept[0], **report['scores']}
    report['scores'] = {name: merged[name] for name in SCORES if name in merged}
    arrays = {**kept[1], **arrays}
    report['settings'] = {**kept[2], **settings}
  write_json_atomic(os.path.join(config.workdir, EVAL_FILE), report)
  write_npz_atomic(os.path.join(config.workdir, SCORES_FILE), arrays)
  log(eval_table(report))
  return report


def _same_model(saved: dict, current: dict) -> bool:
  """Whether two eval.json `model` entries name the same model: a checkpoint by its name inside
  the workdir (however the workdir was spelled), an export by its real path."""
  if 'checkpoint' in saved and 'checkpoint' in current:
    return os.path.basename(saved['checkpoint']) == os.path.basename(current['checkpoint'])
  if 'export_dir' in saved and 'export_dir' in current:
    return os.path.realpath(saved['export_dir']) == os.path.realpath(current['export_dir'])
  return False


def kept_results(workdir: str, model: dict, settings: dict, evaluated_on: str, names) -> tuple:
  """(eval.json's scores, scores.npz's arrays, eval.json's settings) of the scores an evaluation
  of `names` leaves out, to be written again beside the new ones; () when there are none.

  An evaluation of fewer scores than eval.json holds adds to it when it is of the same model under
  the same settings (the batch size aside); otherwise it would lose the fuller results, so it is
  refused.
  """
  try:
    with open(os.path.join(workdir, EVAL_FILE), encoding='utf-8') as handle:
      saved = json.load(handle)
    others = {name: values for name, values in saved['scores'].items() if name not in names}
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return ()  # no earlier results, or unreadable ones: nothing to keep
  if not others:
    return ()
  saved_settings = saved.get('settings', {})
  same = (_same_model(saved.get('model', {}), model) and saved.get('evaluated_on') == evaluated_on
          and all(saved_settings[key] == value for key, value in settings.items()
                  if key in saved_settings and key != 'batch_size'))
  arrays = {}
  if same:
    try:
      with np.load(os.path.join(workdir, SCORES_FILE)) as saved_arrays:
        arrays = {name: saved_arrays[name] for name in others}
    except (OSError, ValueError, KeyError):
      same = False
  if not same:
    raise UsageError(f'--scores={",".join(names)} would replace {os.path.join(workdir, EVAL_FILE)}'
                     f', which also holds {",".join(others)} of another model or settings: '
                     'evaluate every score (leave out --scores), or pass another --workdir')
  return others, arrays, saved_settings


def eval_table(report: dict) -> str:
  """A plain-text table: one row per score, one column per metric (percent); `*` marks the best
  value of each column (the highest, the lowest for FPR95)."""
  title = (f'{report["dataset"]}, {holdout_text(**report["holdout"])}, '
           f'{report["num_examples"]} {report["evaluated_on"]} examples, accuracy {report["accuracy"]:.2f}%, skew {report["skew"]:.2f}%')
  if not report['scores']:
    return title + '; no anomaly to rank: scores.npz holds the scores'
  # eval.json files written before the correct-only figures lack their columns.
  columns = [(key, heading) for key, heading in METRIC_COLUMNS
             if all(key in values for values in report['scores'].values())]
  rows = [[name, *(values[key] for key, _ in columns)]
          for name, values in report['scores'].items()]
  marked = [set() for _ in rows]
  for column, (key, _) in enumerate(columns, start=1):
    values = [row[column] for row in rows if row[column] is not None]
    if values and key not in UNRANKED:
      best = min(values) if key in LOWER_IS_BETTER else max(values)
      for row, row_marks in zip(rows, marked):
        if row[column] == best:
          row_marks.add(column)
  table = text_table(title, ['score', *(heading for _, heading in columns)],
                     [[_shown(value) for value in row] for row in rows],
                     [13] + [10] * len(columns), marked)
  if 'num_misclassified' not in report:
    return table
  return table + (
      f'\nAPc, AUROCc: anomalies against the correctly classified known examples only (the '
      f'{report["num_misclassified"]} misclassified dropped; '
      f'skew {report["skew_correct_only"]:.2f}%)'
      '\nerrAUROC: misclassified known examples (positive) against correctly classified ones')


def _shown(value):
  """A cell: None (a ranking with one class) prints as a dash."""
  return '-' if value is None else value
