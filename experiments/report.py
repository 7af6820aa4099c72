r"""Aggregates a sweep's results.json files into the paper's table shape.

  python -m experiments.report --root=runs/table3 --compare=paper
  python -m experiments.report --root=runs/table5 --format=latex > table5.tex

Rows: one per anomaly class plus Average (one per dataset for several datasets, as Table 5);
columns: MSP, ODIN (and with --scores, the AP of more scores from each run's eval.json, which
`python -m tfanom.evaluate --workdir=RUN` writes) and accuracy per auxiliary task; mean ± std over
seeds (see
experiments/tables.py for how the Average row's ± is computed). Runs that are not complete are
left out and their cells marked (k/n); a corrupt results.json gets a one-line warning.

  python -m experiments.report --root=runs/rotation_small --paired

--paired compares the --aux=rotation runs with their --aux=none pairs (every other setting equal):
per score, each model's mean and the mean paired difference with a 95% t interval, for AP and for
AP against the correctly classified known images only; the best score of each model; and each
pair's runs, their accuracy and the AP of their main scores (in CSV, of every score). Scores
come from each run's eval.json (every score; its correct-only figures recomputed from scores.npz
when eval.json predates them), else from results.json (MSP and ODIN).
"""

import functools
import json
import os
import sys
import zipfile

from absl import app, flags

from tfanom.cli.flags import run_command

def command(flag_values=flags.FLAGS):
  """Defines the report's flags in `flag_values`; returns its main."""
  flags.DEFINE_string('root', None, 'The sweep root (holding sweep.json).', flag_values=flag_values)
  flags.DEFINE_enum('format', 'markdown', ['markdown', 'latex', 'csv'], 'Output format.',
                    flag_values=flag_values)
  flags.DEFINE_list('scores', [], 'More scores to put beside MSP and ODIN (their AP, from each '
                    "run's eval.json), e.g. rotpred,knn.", flag_values=flag_values)
  flags.DEFINE_enum('compare', None, ['paper'], "paper: the paper's numbers beside ours, with the "
                    'difference (sweeps table3, table4, table5, table6, table7).',
                    flag_values=flag_values)
  flags.DEFINE_bool('paired', False, 'Compare each --aux=rotation run with its --aux=none pair: '
                    'mean paired differences with 95% t intervals, per score.',
                    flag_values=flag_values)
  return functools.partial(main, settings=flag_values)


def main(argv, settings):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from . import paper_numbers, sweep_state, tables  # pylint: disable=g-import-not-at-top
  from tfanom.anomaly import SCORES  # pylint: disable=g-import-not-at-top
  from tfanom.errors import UsageError, reported_as_one_line  # pylint: disable=g-import-not-at-top
  from tfanom.workdir import EVAL_FILE  # pylint: disable=g-import-not-at-top
  scores = tuple(settings.scores)
  with reported_as_one_line('experiments.report'):
    unknown = [name for name in scores if name not in SCORES]
    if unknown:
      raise UsageError(f'--scores: unknown score {", ".join(unknown)}; choose from '
                       f'{",".join(SCORES)}')
    if settings.root is None:
      raise UsageError('--root is required: the directory given to experiments.sweep')
    if settings.paired and (settings.compare or scores or settings.format == 'latex'):
      raise UsageError('--paired reports every score in markdown or csv: leave out --compare, '
                       '--scores and --format=latex')
    sweep, sweep_runs = sweep_state.load_definition(settings.root)
    if settings.compare and sweep not in paper_numbers.TABLES:
      raise UsageError(f'--compare=paper: {settings.root} holds sweep {sweep}, which has no table '
                       f'in the paper; the paper has {", ".join(paper_numbers.TABLES)}')
  states = [sweep_state.run_state(settings.root, run) for run in sweep_runs]
  if settings.paired:
    with reported_as_one_line('experiments.report'):
      report_pairs(sweep, states, settings)
    return
  usable = {}
  for state in states:
    if state.problem:
      print(f'warning: {state.problem}: left out as incomplete', file=sys.stderr)
    elif state.status == 'complete':
      try:
        evaluation = read_evaluation(os.path.join(state.workdir, EVAL_FILE)) if scores else None
      except (OSError, ValueError) as error:
        print(f'warning: {state.workdir} has no readable {EVAL_FILE} ({error}) for --scores: '
              f'left out as incomplete; run python -m tfanom.evaluate --workdir={state.workdir}',
              file=sys.stderr)
        continue
      try:
        usable[state.run.workdir] = tables.run_metrics(state.results, evaluation, scores)
      except (KeyError, TypeError, ValueError):
        print(f'warning: {state.results_path} or its {EVAL_FILE} lacks metrics: left out as '
              'incomplete', file=sys.stderr)
  fell_back = sum(fallback for _, fallback in usable.values())
  if fell_back:
    print(f'warning: {fell_back} runs have an empty `final` window: their last evaluation is '
          'used (marked †)', file=sys.stderr)
  table = tables.build_table(sweep, states, usable, compare=bool(settings.compare), scores=scores)
  print(tables.RENDERERS[settings.format](table), end='' if settings.format == 'csv' else '\n')
  if settings.format == 'csv':
    for note in table.notes:
      print(f'note: {note}', file=sys.stderr)
  complete = len(usable)
  if complete < len(states):
    print(f'{complete} of {len(states)} runs complete', file=sys.stderr)


def report_pairs(sweep: str, states, settings) -> None:
  """Prints the paired comparison of a root's --aux=none / --aux=rotation runs."""
  from . import tables  # pylint: disable=g-import-not-at-top
  from tfanom.errors import UsageError  # pylint: disable=g-import-not-at-top
  from tfanom.workdir import EVAL_FILE  # pylint: disable=g-import-not-at-top
  figures = {}
  for state in states:
    if state.problem:
      print(f'warning: {state.problem}: left out as incomplete', file=sys.stderr)
    if state.status != 'complete':
      continue
    evaluated = None
    path = os.path.join(state.workdir, EVAL_FILE)
    if os.path.exists(path):
      try:
        evaluated = tables.figures_of_evaluation(
            with_correct_only(state.workdir, read_evaluation(path)))
      except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        print(f'warning: {path} or its scores.npz is unreadable ({error}): the pair uses '
              'results.json', file=sys.stderr)
    try:
      figures[state.run.workdir] = {'results.json': tables.figures_of_results(state.results),
                                    'eval.json': evaluated}
    except (KeyError, TypeError, ValueError):
      print(f'warning: {state.results_path} lacks metrics: left out as incomplete',
            file=sys.stderr)
  study = tables.paired_study(sweep, states, figures)
  if study is None:
    raise UsageError(f'--paired: --root={settings.root} holds no --aux=none / --aux=rotation pair '
                     'of runs with every other setting equal (e.g. sweeps rotation_small, '
                     'rotation_fast)')
  print(tables.PAIRED_RENDERERS[settings.format](study),
        end='' if settings.format == 'csv' else '\n')
  if settings.format == 'csv':
    for note in study.notes:
      print(f'note: {note}', file=sys.stderr)


def with_correct_only(workdir: str, evaluation: dict) -> dict:
  """`evaluation` (an eval.json), its `scores` recomputed from the run's scores.npz when it
  predates the correct-only figures; as it is when they are there or scores.npz is not."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tfanom.workdir import SCORES_FILE  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, SCORES_FILE)
  if all('ap_correct_only' in values for values in evaluation['scores'].values()) or \
      not os.path.exists(path):
    return evaluation
  from tfanom.cli.startup import import_tensorflow_quietly  # pylint: disable=g-import-not-at-top
  import_tensorflow_quietly()  # metrics imports TensorFlow: without its native start-up lines
  from tfanom.anomaly import metrics  # pylint: disable=g-import-not-at-top
  with np.load(path) as archive:
    arrays = {name: archive[name] for name in archive.files}
  names = [name for name in evaluation['scores'] if name in arrays]
  print(f'note: {workdir}: correct-only figures computed from {SCORES_FILE}', file=sys.stderr)
  return dict(evaluation, scores=metrics.score_metrics(
      arrays['label'], arrays['prediction'], {name: arrays[name] for name in names}))


def read_evaluation(path: str) -> dict:
  with open(path, encoding='utf-8') as handle:
    return json.load(handle)


def run_main():
  """The `tfanom-report` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
