"""A run's `results.json`: the last evaluation, the final-window average, the history; its table."""

import numpy as np

from tfanom.anomaly.metrics import MASKING_METRICS
from tfanom.config import TrainConfig
from tfanom.data.holdout import holdout_text
from tfanom.summaries import text_table


def final_metrics(evaluations: list[dict], epochs: int, window: int) -> dict:
  """The metrics averaged over the evaluations after each of the last `window` epochs."""
  last = [e for e in evaluations if e['epoch'] > epochs - window]
  if not last:
    return {}
  return dict(
      epochs=[e['epoch'] for e in last],
      accuracy=float(np.mean([e['accuracy'] for e in last])),
      skew=last[-1]['skew'],
      ap={name: float(np.mean([e['ap'][name] for e in last])) for name in last[-1]['ap']},
      **{metric: _mean_per_score([e[metric] for e in last]) for metric in MASKING_METRICS
         # A run resumed from before these figures existed has them for its later epochs only.
         if all(metric in e for e in last)})


def _mean_per_score(values: list[dict]) -> dict:
  """Per score, the mean over evaluations; None where an evaluation had none (one class)."""
  return {name: None if any(v[name] is None for v in values)
          else float(np.mean([v[name] for v in values])) for name in values[-1]}


def build_results(config: TrainConfig, holdout_index: int, holdout_name: str,
                  evaluations: list[dict], final: dict) -> dict:
  """`results.json`: the last evaluation at top level, `final` averaged over the last epochs."""
  last = evaluations[-1]
  return dict(
      dataset=config.dataset,
      holdout=dict(index=holdout_index, name=holdout_name),
      aux=config.aux,
      seed=config.seed,
      evaluated_on='validation' if config.validation else 'test',
      flags=config.to_dict(),
      accuracy=last['accuracy'],
      skew=last['skew'],
      ap=last['ap'],
      **{metric: last[metric] for metric in MASKING_METRICS if metric in last},
      num_examples=last['num_examples'],
      num_anomalies=last['num_anomalies'],
      **{key: last[key] for key in ('num_misclassified', 'skew_correct_only') if key in last},
      final=final,
      history=evaluations,
  )


def summary_table(results: dict) -> str:
  """A plain-text table of the last evaluation and the final-window average."""
  scores = list(results['ap'])
  rows = [('last evaluation', results)]
  if results.get('final'):
    window = results['final']['epochs']
    rows.append((f'mean of epochs {window[0]}-{window[-1]}', results['final']))
  title = (f'{results["dataset"]}, {holdout_text(**results["holdout"])}, aux = {results["aux"]}, seed {results["seed"]}, '
           f'{results["num_examples"]} {results["evaluated_on"]} examples, '
           f'skew {results["skew"]:.2f}%')
  return text_table(title, ['', 'accuracy', *(f'AP {s}' for s in scores)],
                    [[label, values['accuracy'], *(values['ap'][s] for s in scores)]
                     for label, values in rows], [22] + [10] * (1 + len(scores)))
