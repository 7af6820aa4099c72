"""A run's `results.json`: the last evaluation, the final-window average, the history; its table."""

import numpy as np

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
      ap={name: float(np.mean([e['ap'][name] for e in last])) for name in last[-1]['ap']})


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
      num_examples=last['num_examples'],
      num_anomalies=last['num_anomalies'],
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
