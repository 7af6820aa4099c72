"""Figures of a sweep, one pair per (dataset, hold-out class), every variant and seed on each:

- training curves in the style of the paper's Figure 1: training cost, test accuracy and average
  precision against epochs, from each run's `history` in results.json;
- precision-recall curves (anomalies positive) from each run's scores.npz, written by
  `python -m tfanom.evaluate`.
"""

import os

import matplotlib

matplotlib.use('Agg')  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=g-import-not-at-top
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: E402

SCORES_FILE = 'scores.npz'
SCORE_LABELS = {'msp': 'MSP', 'odin': 'ODIN'}
_LINESTYLES = {'msp': '-', 'odin': '--'}
_MARKERS = 'osD^v<>'  # one per seed, so that the trials of a variant are told apart


def _colors(labels):
  cycle = plt.rcParams['axes.prop_cycle'].by_key()['color']
  return {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}


def training_curves(title: str, runs: list[tuple[str, int, dict]], path: str) -> None:
  """`runs`: (variant label, seed, results) per run; one line per run and quantity."""
  colors = _colors(dict.fromkeys(label for label, _, _ in runs))
  figure, (cost, accuracy, ap) = plt.subplots(1, 3, figsize=(17, 4.5))
  for label, seed, results in runs:
    history = results['history']
    epochs = [entry['epoch'] for entry in history]
    style = dict(color=colors[label], alpha=0.8, marker=_MARKERS[seed % len(_MARKERS)],
                 markersize=4)
    name = f'{label}, seed {seed}'
    with_train = [(e['epoch'], e['train']['loss']) for e in history if 'train' in e]
    if with_train:
      cost.plot(*zip(*with_train), label=name, **style)
    accuracy.plot(epochs, [e['accuracy'] for e in history], label=name, **style)
    for score, linestyle in _LINESTYLES.items():
      ap.plot(epochs, [e['ap'][score] for e in history], linestyle=linestyle,
              label=f'{name}, {SCORE_LABELS[score]}', **style)
  skew = runs[0][2]['history'][-1]['skew']
  ap.axhline(skew, color='gray', linewidth=0.8, linestyle=':', label=f'skew {skew:.2f}%')
  for axes, ylabel in ((cost, 'training cost (classification)'), (accuracy, 'test accuracy (%)'),
                       (ap, 'average precision (%)')):
    axes.set_xlabel('epoch')
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
  ap.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.02, 1.0))
  figure.suptitle(title)
  _save(figure, path)


def pr_curves(title: str, runs: list[tuple[str, int, dict]], path: str,
              scores=tuple(SCORE_LABELS)) -> None:
  """`runs`: (variant label, seed, arrays of scores.npz) per run; one panel per score."""
  colors = _colors(dict.fromkeys(label for label, _, _ in runs))
  figure, panels = plt.subplots(1, len(scores), figsize=(6 * len(scores), 5), squeeze=False)
  for axes, score in zip(panels[0], scores):
    for label, seed, arrays in runs:
      if score not in arrays:
        continue
      is_anomaly = np.asarray(arrays['is_anomaly'], bool)
      precision, recall, _ = precision_recall_curve(is_anomaly, arrays[score])
      ap = 100 * average_precision_score(is_anomaly, arrays[score])
      axes.step(recall, precision, where='post', color=colors[label], alpha=0.8,
                linestyle=('-', '--', ':', '-.')[seed % 4],
                label=f'{label}, seed {seed}: AP {ap:.2f}%')
    skew = float(np.mean(np.asarray(runs[0][2]['is_anomaly'], bool)))
    axes.axhline(skew, color='gray', linewidth=0.8, linestyle=':', label=f'skew {100 * skew:.2f}%')
    axes.set(xlabel='recall (anomalies)', ylabel='precision', xlim=(0, 1), ylim=(0, 1.02),
             title=SCORE_LABELS.get(score, score))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
  figure.suptitle(title)
  _save(figure, path)


def _save(figure, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)
