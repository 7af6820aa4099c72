r"""Aggregates a sweep's results.json files into the paper's table shape.

  python -m experiments.report --root=runs/table3 --compare=paper
  python -m experiments.report --root=runs/table5 --format=latex > table5.tex

Rows: one per anomaly class plus Average (one per dataset for several datasets, as Table 5);
columns: MSP, ODIN (and with --scores, the AP of more scores from each run's eval.json, which
`python -m tfanom.evaluate --workdir=RUN` writes) and accuracy per auxiliary task; mean ± std over
seeds (see
experiments/tables.py for how the Average row's ± is computed). Runs that are not complete are
left out and their cells marked (k/n); a corrupt results.json gets a one-line warning.
"""

import json
import os
import sys

from absl import app, flags

from tfanom.cli.flags import run_command

_ROOT = flags.DEFINE_string('root', None, 'The sweep root (holding sweep.json).')
_FORMAT = flags.DEFINE_enum('format', 'markdown', ['markdown', 'latex', 'csv'], 'Output format.')
_SCORES = flags.DEFINE_list('scores', [], 'More scores to put beside MSP and ODIN (their AP, '
                             "from each run's eval.json), e.g. rotpred,knn.")
_COMPARE = flags.DEFINE_enum('compare', None, ['paper'], 'paper: the paper\'s numbers beside ours, '
                             'with the difference (sweeps table3, table4, table5, table6, table7).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from experiments import paper_numbers, sweep_root, tables  # pylint: disable=g-import-not-at-top
  from tfanom.anomaly import SCORES  # pylint: disable=g-import-not-at-top
  from tfanom.errors import UsageError, reported_as_one_line  # pylint: disable=g-import-not-at-top
  from tfanom.workdir import EVAL_FILE  # pylint: disable=g-import-not-at-top
  scores = tuple(_SCORES.value)
  with reported_as_one_line('experiments.report'):
    unknown = [name for name in scores if name not in SCORES]
    if unknown:
      raise UsageError(f'--scores: unknown score {", ".join(unknown)}; choose from '
                       f'{",".join(SCORES)}')
    if _ROOT.value is None:
      raise UsageError('--root is required: the directory given to experiments.sweep')
    sweep, sweep_runs = sweep_root.load_definition(_ROOT.value)
    if _COMPARE.value and sweep not in paper_numbers.TABLES:
      raise UsageError(f'--compare=paper: {_ROOT.value} holds sweep {sweep}, which has no table '
                       f'in the paper; the paper has {", ".join(paper_numbers.TABLES)}')
  states = [sweep_root.run_state(_ROOT.value, run) for run in sweep_runs]
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
  table = tables.build_table(sweep, states, usable, compare=bool(_COMPARE.value), scores=scores)
  print(tables.RENDERERS[_FORMAT.value](table), end='' if _FORMAT.value == 'csv' else '\n')
  if _FORMAT.value == 'csv':
    for note in table.notes:
      print(f'note: {note}', file=sys.stderr)
  complete = len(usable)
  if complete < len(states):
    print(f'{complete} of {len(states)} runs complete', file=sys.stderr)


def read_evaluation(path: str) -> dict:
  with open(path, encoding='utf-8') as handle:
    return json.load(handle)


def run_main():
  """The `tfanom-report` console script."""
  run_command(main, sys.modules[__name__])


if __name__ == '__main__':
  run_main()
