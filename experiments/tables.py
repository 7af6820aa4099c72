"""The paper's table shapes from a sweep's results: aggregation, then markdown, LaTeX or CSV.

Each run contributes its `final` metrics (the mean of its last-epoch evaluations, as the paper),
or its last evaluation where `final` is empty. A cell is the mean ± std over trials (seeds); std is
numpy's population std (ddof=0): the paper does not say which it used. The Average row is the mean
over classes of the per-class means, and its ± is the std over trials of the per-trial class
average (so classes that vary together, as in the paper's 96.03 ± 0.00, give a small ±); only
trials complete for every class enter that ±. A root holding several datasets (Table 5's ImageNet
subsets) gets one row per dataset, computed as that dataset's Average row, with its skew.
"""

import csv
import dataclasses
import io
import json
import math

import numpy as np
from scipy import stats

from . import paper_numbers
from .sweep_state import RunState
from .named_sweeps import RUN_KEYS, format_value

METRICS = (('msp', 'MSP'), ('odin', 'ODIN'), ('accuracy', 'Accuracy'))
AUX_LABELS = {'none': 'Classification-only', 'rotation': 'Rotation-augmented',
              'cpc': 'CPC-augmented'}
FORMATS = ('markdown', 'latex', 'csv')
NO_VALUE = '–'


@dataclasses.dataclass(frozen=True)
class Cell:
  mean: float | None
  std: float | None
  runs: int  # complete runs behind the value
  expected: int  # runs the sweep defines for it
  fallback: bool = False  # some run had an empty `final`: its last evaluation is used
  paper: tuple[float, float] | None = None  # (mean, std); std None for a skew

  @property
  def incomplete(self):
    return self.runs < self.expected


@dataclasses.dataclass(frozen=True)
class Column:
  group: str  # e.g. 'Rotation-augmented'; '' for the skew
  name: str  # e.g. 'MSP'


@dataclasses.dataclass(frozen=True)
class Table:
  title: str
  row_header: str
  columns: list[Column]
  rows: list[tuple[str, list[Cell]]]  # label, one cell per column
  notes: list[str]
  compare: str | None  # the paper's table name when comparing


def run_metrics(results: dict, evaluation: dict | None = None,
                scores: tuple[str, ...] = ()) -> tuple[dict, bool]:
  """A run's metrics from `final`, else from its last evaluation; and whether it fell back.

  `scores`: more scores' AP, from the run's `evaluation` (its eval.json, written by
  tfanom.evaluate for the last checkpoint); a KeyError when it lacks one.
  """
  source = results['final'] or results
  extra = {name: float(evaluation['scores'][name]['ap']) for name in scores}
  return (dict(msp=float(source['ap']['msp']), odin=float(source['ap']['odin']),
               accuracy=float(source['accuracy']), skew=float(source['skew']), **extra),
          not results['final'])


def metric_columns(scores: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
  """(metric, heading) per column of a variant: MSP, ODIN, the extra `scores`, accuracy."""
  return METRICS[:2] + tuple((name, name) for name in scores if name not in ('msp', 'odin')) + \
      METRICS[2:]


def variant_key(settings: dict) -> str:
  return json.dumps({k: v for k, v in settings.items() if k not in ('dataset', 'holdout', 'seed')},
                    sort_keys=True)


def variant_labels(states: list[RunState]) -> dict[str, str]:
  """Variant key -> column group label, from the settings that tell variants apart."""
  variants = {}
  for state in states:
    variants.setdefault(variant_key(state.run.settings), state.run.settings)
  keys = set().union(*variants.values()) - {'dataset', 'holdout', 'seed'}
  varying = sorted(k for k in keys if len({format_value(s.get(k)) for s in variants.values()}) > 1)
  labels = {}
  for key, settings in variants.items():
    aux = settings.get('aux', 'none')
    parts = [AUX_LABELS.get(aux, f'{aux}-augmented')]
    parts += [f'{k}={format_value(settings.get(k))}' for k in varying if k != 'aux']
    labels[key] = ', '.join(parts)
  return labels


def _holdout_order(holdout: str):
  return (0, int(holdout), '') if holdout.isdigit() else (1, 0, holdout)


def _stat(values: list[float]):
  """Mean and std; no std from a single trial."""
  if not values:
    return None, None
  return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else None


def build_table(sweep: str, states: list[RunState], usable: dict, compare: bool,
                scores: tuple[str, ...] = ()) -> Table:
  """`usable`: run workdir -> (metrics, fell back) for the runs that count; `scores`: more
  columns, which `run_metrics` read from each run's eval.json."""
  columns_of_variant = metric_columns(scores)
  labels = variant_labels(states)
  variants = list(labels)
  datasets = list(dict.fromkeys(state.run.settings['dataset'] for state in states))
  # dataset -> variant -> holdout -> seed -> (metrics, fell back) | None when not usable
  trials = {}
  names = {}
  for state in states:
    s = state.run.settings
    entry = usable.get(state.run.workdir)
    trials.setdefault(s['dataset'], {}).setdefault(variant_key(s), {}).setdefault(
        str(s['holdout']), {})[s['seed']] = entry
    if state.results is not None and entry is not None:
      names[(s['dataset'], str(s['holdout']))] = state.results['holdout']['name']
  paper = paper_numbers.TABLES.get(sweep) if compare else None

  def lookup(row, variant, metric):
    if paper is None:
      return None
    aux = json.loads(variant).get('aux', 'none')
    return paper_numbers.paper_value(sweep, row, aux, metric)

  columns = [Column(labels[v], label) for v in variants for _, label in columns_of_variant]
  holdouts = {dataset: sorted(set().union(*by_variant.values()), key=_holdout_order)
              for dataset, by_variant in trials.items()}
  if len(datasets) == 1:
    dataset = datasets[0]
    by_variant = trials[dataset]
    rows = []
    for holdout in holdouts[dataset]:
      index = int(holdout) if holdout.isdigit() else None
      label = (names.get((dataset, holdout)) or _paper_row_name(sweep, index)
               or f'class {holdout}')
      rows.append((label, [_class_cell(by_variant.get(v, {}).get(holdout, {}), metric,
                                       lookup(index, v, metric))
                           for v in variants for metric, _ in columns_of_variant]))
    rows.append(('Average', [_average_cell(by_variant.get(v, {}), metric,
                                           lookup('Average', v, metric))
                             for v in variants for metric, _ in columns_of_variant]))
    return Table(f'{sweep}: {dataset}', 'Anomaly', columns, rows,
                 _notes(states, rows, paper, scores), paper)
  rows = []
  for dataset in datasets:
    member_skews = {}  # the skew is the data's: any complete run of a member gives it
    for by_holdout in trials[dataset].values():
      for holdout, seeds in by_holdout.items():
        for entry in seeds.values():
          if entry is not None:
            member_skews.setdefault(holdout, entry[0]['skew'])
    skew = Cell(float(np.mean(list(member_skews.values()))) if member_skews else None, None,
                len(member_skews), len(holdouts[dataset]),
                paper=(paper_numbers.paper_skew(sweep, dataset), None) if paper else None)
    rows.append((dataset, [skew] + [_average_cell(trials[dataset].get(v, {}), metric,
                                                  lookup(dataset, v, metric))
                                    for v in variants for metric, _ in columns_of_variant]))
  return Table(f'{sweep}: {", ".join(datasets)} (each row averaged over its hold-out classes)',
               'Dataset', [Column('', 'Skew')] + columns, rows, _notes(states, rows, paper, scores),
               paper)


def _paper_row_name(sweep: str, index: int | None):
  """The paper's name of a class, for rows none of whose runs is complete yet."""
  rows = {'table3': paper_numbers.TABLE3_CIFAR10, 'table4': paper_numbers.TABLE4_STL10,
          'table7': paper_numbers.TABLE3_CIFAR10}.get(sweep)
  return rows[index][0] if rows and index is not None and index < len(rows) - 1 else None


def _class_cell(seeds: dict, metric: str, paper) -> Cell:
  used = [entry for entry in seeds.values() if entry is not None]
  mean, std = _stat([metrics[metric] for metrics, _ in used])
  return Cell(mean, std, len(used), len(seeds), any(fell_back for _, fell_back in used), paper)


def _average_cell(by_holdout: dict, metric: str, paper) -> Cell:
  """Mean over classes of per-class means; ± = std over complete trials of the class average."""
  holdouts = list(by_holdout)
  class_means = []
  for seeds in by_holdout.values():
    values = [entry[0][metric] for entry in seeds.values() if entry is not None]
    if values:
      class_means.append(np.mean(values))
  seeds = sorted(set().union(*(set(s) for s in by_holdout.values())))
  complete = [seed for seed in seeds
              if all(by_holdout[h].get(seed) is not None for h in holdouts)]
  trial_averages = [np.mean([by_holdout[h][seed][0][metric] for h in holdouts])
                    for seed in complete]
  used = [entry for s in by_holdout.values() for entry in s.values() if entry is not None]
  return Cell(float(np.mean(class_means)) if class_means else None,
              float(np.std(trial_averages)) if len(trial_averages) > 1 else None,
              len(used), sum(len(s) for s in by_holdout.values()), any(f for _, f in used), paper)


def _notes(states, rows, paper, scores=()) -> list[str]:
  shared = {}
  for key, value in states[0].run.settings.items():
    if key not in RUN_KEYS and all(s.run.settings.get(key) == value for s in states):
      shared[key] = format_value(value)
  notes = []
  if shared:
    notes.append('Settings of every run: ' + ', '.join(f'{k}={v}' for k, v in shared.items()))
  notes.append('Each value: mean ± std (ddof=0) over trials (seeds) of each run\'s `final` '
               'metrics (the mean of its last-epoch evaluations). Average: mean over classes of '
               'the per-class means; ± = std over trials of the per-trial class average.')
  extra = [name for name, _ in metric_columns(scores) if name in scores]
  if extra:
    notes.append(f'{", ".join(extra)}: the AP in each run\'s eval.json (tfanom.evaluate on its '
                 'last checkpoint), not a mean over epochs.')
  cells = [cell for _, row in rows for cell in row]
  if any(cell.incomplete for cell in cells):
    notes.append('(k/n): only k of the n runs behind this value are complete; the others are '
                 'left out (and out of the Average ±).')
  if any(cell.fallback for cell in cells):
    notes.append('†: some runs have an empty `final` window; their last evaluation is used.')
  if paper:
    notes.append(f'paper: {paper} of Ahmed & Courville (2020); Δ = ours − paper.')
  return notes


# Rendering -----------------------------------------------------------------------------------

def _value_text(mean, std, latex=False) -> str:
  if mean is None:
    return '--' if latex else NO_VALUE
  pm = r' \pm ' if latex else ' ± '
  text = f'{mean:.2f}' + (f'{pm}{std:.2f}' if std is not None else '')
  return f'${text}$' if latex else text


def _cell_texts(cell: Cell, compare: bool, latex=False) -> list[str]:
  ours = _value_text(cell.mean, cell.std, latex)
  if cell.mean is not None and cell.incomplete:
    ours += f' ({cell.runs}/{cell.expected})'
  if cell.fallback:
    ours += r'$^\dagger$' if latex else '†'
  if not compare:
    return [ours]
  if cell.paper is None or cell.paper[0] is None:
    return [ours, _value_text(None, None, latex), _value_text(None, None, latex)]
  if cell.mean is None:
    delta = _value_text(None, None, latex)
  else:
    delta = f'${cell.mean - cell.paper[0]:+.2f}$' if latex else f'{cell.mean - cell.paper[0]:+.2f}'
  return [ours, _value_text(*cell.paper, latex), delta]


def _header_names(table: Table) -> list[tuple[str, str, str]]:
  """(group, metric, kind) per printed column; kind is '', or ours/paper/Δ when comparing."""
  kinds = ('ours', 'paper', 'Δ') if table.compare else ('',)
  return [(column.group, column.name, kind) for column in table.columns for kind in kinds]


def to_markdown(table: Table) -> str:
  headers = [' '.join(part for part in (group, name, kind if kind != 'ours' else '') if part)
             for group, name, kind in _header_names(table)]
  lines = [f'**{table.title}**', '', '| ' + ' | '.join([table.row_header] + headers) + ' |',
           '|' + '---|' + '---:|' * len(headers)]
  for label, cells in table.rows:
    texts = [text for cell in cells for text in _cell_texts(cell, bool(table.compare))]
    lines.append('| ' + ' | '.join([label] + texts) + ' |')
  return '\n'.join(lines + [''] + [f'- {note}' for note in table.notes])


def to_latex(table: Table) -> str:
  names = _header_names(table)

  def header_row(parts):
    merged = []  # runs of equal labels become one \multicolumn
    for part in parts:
      if merged and merged[-1][0] == part:
        merged[-1][1] += 1
      else:
        merged.append([part, 1])
    return ' & '.join(label if count == 1 else rf'\multicolumn{{{count}}}{{c}}{{{label}}}'
                      for label, count in merged)

  escape = lambda text: text.replace('_', r'\_').replace('%', r'\%').replace('Δ', r'$\Delta$')
  levels = [[escape(group) for group, _, _ in names], [escape(name) for _, name, _ in names]]
  if table.compare:
    levels.append([escape(kind) for _, _, kind in names])
  lines = [f'% {table.title}', r'\begin{tabular}{l' + 'r' * len(names) + '}', r'\toprule']
  for index, level in enumerate(levels):
    first = escape(table.row_header) if index == len(levels) - 1 else ''
    lines.append(first + ' & ' + header_row(level) + r' \\')
  lines.append(r'\midrule')
  for label, cells in table.rows:
    if label == 'Average':
      lines.append(r'\midrule')
    texts = [text for cell in cells for text in _cell_texts(cell, bool(table.compare), latex=True)]
    lines.append(' & '.join([escape(label)] + texts) + r' \\')
  lines += [r'\bottomrule', r'\end{tabular}'] + [f'% {note}' for note in table.notes]
  return '\n'.join(lines)


def to_csv(table: Table) -> str:
  """Numbers only: mean, std, complete and expected runs (and the paper's) per column."""
  fields = ['mean', 'std', 'runs', 'expected'] + (['paper_mean', 'paper_std', 'diff']
                                                  if table.compare else [])
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow([table.row_header] + [' '.join(p for p in (c.group, c.name, f) if p)
                                        for c in table.columns for f in fields])
  number = lambda value: '' if value is None else f'{value:.4f}'
  for label, cells in table.rows:
    row = [label]
    for cell in cells:
      row += [number(cell.mean), number(cell.std), cell.runs, cell.expected]
      if table.compare:
        paper_mean, paper_std = cell.paper or (None, None)
        diff = (cell.mean - paper_mean if cell.mean is not None and paper_mean is not None
                else None)
        row += [number(paper_mean), number(paper_std), number(diff)]
    writer.writerow(row)
  return buffer.getvalue()


RENDERERS = {'markdown': to_markdown, 'latex': to_latex, 'csv': to_csv}


# Paired studies ------------------------------------------------------------------------------
#
# A root whose runs come in --aux=none / --aux=rotation pairs with every other setting equal (the
# same class and seed: rotation_small, rotation_fast) is compared pair by pair: per score, the
# mean over pairs of (rotation - none) with a 95% t interval over the pair differences. The pairs
# share a class, a seed and so the same data order and initial draw: pairing removes what they
# share from the comparison. See docs/reproducing.md ("Paired studies") for why a t interval.

PAIRED_AUXES = ('none', 'rotation')
# (key, heading) of the per-score figures compared: AP, and AP against the correctly classified
# known images only (docs/scores.md, "Masking by misclassification").
PAIRED_FIGURES = (('ap', 'AP'), ('ap_correct_only', 'APc'))
INTERVAL_LEVEL = 0.95
# The scores of the pair-by-pair table: MSP, the best class-head score on the CIFAR-10 runs
# (docs/serving.md) and the rotation head's two; the CSV holds every score.
PAIR_SCORES = ('msp', 'energy', 'rotation', 'rotpred')


@dataclasses.dataclass(frozen=True)
class Interval:
  """The mean of `values` with its two-sided t interval; no interval from fewer than 2 values."""
  mean: float | None
  low: float | None
  high: float | None
  count: int


def t_interval(values, level: float = INTERVAL_LEVEL) -> Interval:
  """Mean ± t_{(1+level)/2, n-1} · s / sqrt(n), s the sample standard deviation (ddof=1)."""
  values = [float(v) for v in values]
  if not values:
    return Interval(None, None, None, 0)
  mean = float(np.mean(values))
  if len(values) < 2:
    return Interval(mean, None, None, len(values))
  half = (float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * float(np.std(values, ddof=1))
          / math.sqrt(len(values)))
  return Interval(mean, mean - half, mean + half, len(values))


def figures_of_results(results: dict) -> dict:
  """A run's figures from results.json (`final`, else its last evaluation): accuracy, and per
  figure (AP, the correct-only figures when recorded) score -> value, for MSP and ODIN."""
  source = results['final'] or results
  return dict(accuracy=float(source['accuracy']), **{
      key: {name: float(value) for name, value in source.get(key, {}).items() if value is not None}
      for key in ('ap', 'ap_correct_only', 'misclassification_auroc')})


def figures_of_evaluation(evaluation: dict) -> dict:
  """A run's figures from its eval.json: every score it holds."""
  return dict(accuracy=float(evaluation['accuracy']), **{
      key: {name: float(values[key]) for name, values in evaluation['scores'].items()
            if values.get(key) is not None}
      for key in ('ap', 'ap_correct_only', 'misclassification_auroc')})


@dataclasses.dataclass(frozen=True)
class PairedRow:
  figure: str  # 'AP', 'APc', 'accuracy', 'errAUROC'
  score: str  # '' for accuracy
  none: Interval  # the none model's mean over the pairs that have the figure
  rotation: Interval
  difference: Interval | None  # rotation - none over the pairs where both have it


@dataclasses.dataclass(frozen=True)
class BestRow:
  figure: str
  none_score: str
  none_mean: float
  rotation_score: str
  rotation_mean: float
  difference: Interval


@dataclasses.dataclass(frozen=True)
class Pair:
  label: str  # the settings that tell the pairs apart, e.g. 'holdout=cat, seed=1'
  none: dict  # figures (figures_of_results or figures_of_evaluation)
  rotation: dict


@dataclasses.dataclass(frozen=True)
class PairedStudy:
  title: str
  rows: list[PairedRow]
  best: list[BestRow]
  notes: list[str]
  pairs: list[Pair]


def pair_key(settings: dict) -> str:
  return json.dumps({k: v for k, v in settings.items() if k != 'aux'}, sort_keys=True,
                    default=str)


def paired_study(sweep: str, states: list[RunState], figures: dict) -> PairedStudy | None:
  """The rotation - none comparison of the pairs of `states`; None when the root has no pair.

  `figures`: run workdir -> {'results.json': figures, 'eval.json': figures or None} for the
  complete runs (`figures_of_results`, `figures_of_evaluation`). A pair is compared on eval.json
  when both runs have one (every score), else on results.json (MSP and ODIN).
  """
  members = {}
  for state in states:
    aux = state.run.settings.get('aux', 'none')
    if aux in PAIRED_AUXES:
      members.setdefault(pair_key(state.run.settings), {})[aux] = state.run.workdir
  defined = [by_aux for by_aux in members.values() if len(by_aux) == len(PAIRED_AUXES)]
  if not defined:
    return None
  labels = _pair_labels(list(members))
  details, from_eval = [], 0
  for key, by_aux in members.items():
    if len(by_aux) == len(PAIRED_AUXES) and all(by_aux[aux] in figures for aux in PAIRED_AUXES):
      both = [figures[by_aux[aux]] for aux in PAIRED_AUXES]
      source = 'eval.json' if all(f['eval.json'] is not None for f in both) else 'results.json'
      from_eval += source == 'eval.json'
      details.append(Pair(labels[key], *(f[source] for f in both)))
  pairs = [_models(pair) for pair in details]
  rows = _paired_rows(pairs)
  best = [row for row in (_best_row(pairs, key, heading) for key, heading in PAIRED_FIGURES)
          if row is not None]
  notes = [
      f'{len(pairs)} of {len(defined)} pairs complete (a pair: --aux=none and --aux=rotation with '
      f'every other setting equal); {from_eval} compared on eval.json (every score, the last '
      f'checkpoint), {len(pairs) - from_eval} on results.json (MSP and ODIN, its `final` '
      'metrics).',
      f'none, rotation: each model\'s mean over the pairs; Δ: the mean over the pairs of rotation '
      f'− none, with a {INTERVAL_LEVEL:.0%} t interval over the pair differences (mean ± '
      't · s / √n, s the sample standard deviation): an interval for these classes and seeds, '
      'which counts each pair as one independent draw.',
      'APc: AP of the anomalies against the correctly classified known images only; errAUROC: '
      'AUROC of the misclassified known images (positive) against the correct ones.',
      'Best score: the score with the highest mean over the pairs, per model (rotation and rotpred '
      'exist for the rotation model only); Δ compares those two scores pair by pair. Choosing the '
      'best on the same runs flatters both models.']
  return PairedStudy(f'{sweep}: rotation − none, paired by every setting but --aux', rows, best,
                     notes, details)


def _pair_labels(keys: list[str]) -> dict[str, str]:
  """pair_key -> the settings that differ between the pairs (holdout and seed when only one pair
  is defined), as 'holdout=cat, seed=1'."""
  settings = {key: json.loads(key) for key in keys}
  names = list(dict.fromkeys(name for values in settings.values() for name in values))
  varying = [name for name in names
             if len({json.dumps(values.get(name)) for values in settings.values()}) > 1]
  shown = varying or [name for name in ('holdout', 'seed') if name in names]
  return {key: ', '.join(f'{name}={values.get(name)}' for name in shown)
          for key, values in settings.items()}


def _score_order(pairs, key) -> list[str]:
  order = {}
  for none, rotation in pairs:  # the rotation model holds every score the none model does
    order.update(dict.fromkeys(rotation[key]))
    order.update(dict.fromkeys(none[key]))
  return list(order)


def _compare(pairs, value_of) -> tuple[Interval, Interval, Interval | None]:
  """Each model's mean and the paired difference of one figure; value_of(figures) -> value|None."""
  values = [(value_of(none), value_of(rotation)) for none, rotation in pairs]
  nones = [n for n, _ in values if n is not None]
  rotations = [r for _, r in values if r is not None]
  both = [r - n for n, r in values if n is not None and r is not None]
  return (t_interval(nones), t_interval(rotations), t_interval(both) if both else None)


def _paired_rows(pairs) -> list[PairedRow]:
  rows = []
  for key, heading in PAIRED_FIGURES:
    for name in _score_order(pairs, key):
      rows.append(PairedRow(heading, name, *_compare(pairs, lambda f: f[key].get(name))))
  rows.append(PairedRow('accuracy', '', *_compare(pairs, lambda f: f['accuracy'])))
  if any('msp' in f['misclassification_auroc'] for pair in pairs for f in pair):
    rows.append(PairedRow('errAUROC', 'msp', *_compare(
        pairs, lambda f: f['misclassification_auroc'].get('msp'))))
  return rows


def _best_row(pairs, key, heading) -> BestRow | None:
  """The best-mean score of each model among those every pair has, and their paired difference."""
  if not pairs:
    return None
  best = []
  for model in range(len(PAIRED_AUXES)):
    shared = [name for name in _score_order(pairs, key)
              if all(name in pair[model][key] for pair in pairs)]
    if not shared:
      return None
    means = {name: float(np.mean([pair[model][key][name] for pair in pairs])) for name in shared}
    name = max(shared, key=lambda n: means[n])
    best.append((name, means[name]))
  (none_name, none_mean), (rotation_name, rotation_mean) = best
  difference = t_interval([rotation[key][rotation_name] - none[key][none_name]
                           for none, rotation in pairs])
  return BestRow(heading, none_name, none_mean, rotation_name, rotation_mean, difference)


def _signed(value) -> str:
  return NO_VALUE if value is None else f'{value:+.2f}'


def _interval_text(interval: Interval | None) -> str:
  if interval is None or interval.low is None:
    return NO_VALUE
  return f'[{interval.low:+.2f}, {interval.high:+.2f}]'


def _mean_text(interval: Interval) -> str:
  return _value_text(interval.mean, None)


def paired_markdown(study: PairedStudy) -> str:
  lines = [f'**{study.title}**', '',
           '| figure | score | pairs | none | rotation | Δ rotation − none | 95% interval |',
           '|---|---|---:|---:|---:|---:|---|']
  for row in study.rows:
    difference = row.difference or Interval(None, None, None, NO_VALUE)
    lines.append(f'| {row.figure} | {row.score} | {difference.count} | '
                 f'{_mean_text(row.none)} | {_mean_text(row.rotation)} | '
                 f'{_signed(difference.mean)} | {_interval_text(difference)} |')
  if study.best:
    lines += ['', '**Best score of each model**', '',
              '| figure | pairs | none: best score | mean | rotation: best score | mean | '
              'Δ rotation − none | 95% interval |', '|---|---:|---|---:|---|---:|---:|---|']
    for row in study.best:
      lines.append(f'| {row.figure} | {row.difference.count} | {row.none_score} | '
                   f'{row.none_mean:.2f} | {row.rotation_score} | {row.rotation_mean:.2f} | '
                   f'{_signed(row.difference.mean)} | {_interval_text(row.difference)} |')
  if study.pairs:
    shown = [name for name in PAIR_SCORES
             if any(name in figures['ap'] for pair in study.pairs for figures in _models(pair))]
    lines += ['', '**Pair by pair** (AP)', '',
              '| pair | model | accuracy | ' + ' | '.join(shown) + ' | best score |',
              '|---|---|---:|' + '---:|' * len(shown) + '---|']
    for pair in study.pairs:
      for aux, figures in zip(PAIRED_AUXES, _models(pair)):
        ap = figures['ap']
        best = max(ap, key=ap.get) if ap else None
        lines.append(f'| {pair.label} | {aux} | {figures["accuracy"]:.2f} | '
                     + ''.join(f'{_value_text(ap.get(name), None)} | ' for name in shown)
                     + (f'{best} {ap[best]:.2f} |' if best else f'{NO_VALUE} |'))
  return '\n'.join(lines + [''] + [f'- {note}' for note in study.notes])


def _models(pair: Pair) -> tuple[dict, dict]:
  return pair.none, pair.rotation


def paired_csv(study: PairedStudy) -> str:
  """Numbers only: the per-score rows, then (each after an empty line) the best-score rows and
  each run's accuracy and AP per score."""
  number = lambda value: '' if value is None else f'{value:.4f}'  # noqa: E731
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator='\n')
  writer.writerow(['figure', 'score', 'pairs', 'none_mean', 'rotation_mean', 'difference',
                   'low', 'high'])
  for row in study.rows:
    d = row.difference or Interval(None, None, None, 0)
    writer.writerow([row.figure, row.score, d.count, number(row.none.mean),
                     number(row.rotation.mean), number(d.mean), number(d.low), number(d.high)])
  if study.best:
    writer.writerow([])
    writer.writerow(['figure', 'pairs', 'none_score', 'none_mean', 'rotation_score',
                     'rotation_mean', 'difference', 'low', 'high'])
    for row in study.best:
      d = row.difference
      writer.writerow([row.figure, d.count, row.none_score, number(row.none_mean),
                       row.rotation_score, number(row.rotation_mean), number(d.mean),
                       number(d.low), number(d.high)])
  if study.pairs:
    names = _score_order([_models(pair) for pair in study.pairs], 'ap')
    writer.writerow([])
    writer.writerow(['pair', 'model', 'accuracy'] + [f'ap_{name}' for name in names])
    for pair in study.pairs:
      for aux, figures in zip(PAIRED_AUXES, _models(pair)):
        writer.writerow([pair.label, aux, number(figures['accuracy'])]
                        + [number(figures['ap'].get(name)) for name in names])
  return buffer.getvalue()


PAIRED_RENDERERS = {'markdown': paired_markdown, 'csv': paired_csv}
