r"""Writes a sweep's figures as PNGs: training and precision-recall curves per hold-out class.

  python -m experiments.plot --root=runs/table3          # into runs/table3/plots/
  python -m experiments.plot --root=runs/table3 --out=figures

OUT/<dataset>/holdout<k>_training.png: training cost, test accuracy and AP (MSP, ODIN) against
epochs for every complete run (the paper's Figure 1). OUT/<dataset>/holdout<k>_pr.png: precision-
recall curves from the scores.npz that `python -m tfanom.evaluate --workdir=RUN` writes; runs
without one are skipped, with a note.
"""

import functools
import os
import sys

from absl import app, flags

from tfanom.cli.flags import run_command

def command(flag_values=flags.FLAGS):
  """Defines the plots' flags in `flag_values`; returns their main."""
  flags.DEFINE_string('root', None, 'The sweep root (holding sweep.json).', flag_values=flag_values)
  flags.DEFINE_string('out', None, 'Where to write the PNGs; default ROOT/plots.',
                      flag_values=flag_values)
  flags.DEFINE_list('scores', ['msp', 'odin'], 'Scores of scores.npz to draw PR curves of.',
                    flag_values=flag_values)
  return functools.partial(main, settings=flag_values)


def main(argv, settings):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  import numpy as np  # pylint: disable=g-import-not-at-top
  from . import figures, sweep_state, tables  # pylint: disable=g-import-not-at-top
  from tfanom.errors import UsageError, reported_as_one_line  # pylint: disable=g-import-not-at-top
  with reported_as_one_line('experiments.plot'):
    if settings.root is None:
      raise UsageError('--root is required: the directory given to experiments.sweep')
    _, sweep_runs = sweep_state.load_definition(settings.root)
    out = settings.out or os.path.join(settings.root, 'plots')
    try:
      os.makedirs(out, exist_ok=True)
    except OSError as error:
      raise UsageError(f'cannot write --out={out} ({error}): choose a writable directory') from None
  states = [sweep_state.run_state(settings.root, run) for run in sweep_runs]
  labels = tables.variant_labels(states)
  groups = {}  # (dataset, holdout) -> states, in sweep order
  for state in states:
    groups.setdefault((state.run.settings['dataset'], state.run.settings['holdout']), []).append(
        state)
  written, without_scores, incomplete = [], [], 0
  for (dataset, holdout), members in groups.items():
    complete = [s for s in members if s.status == 'complete']
    incomplete += len(members) - len(complete)
    for state in members:
      if state.problem:
        print(f'warning: {state.problem}: left out', file=sys.stderr)
    if not complete:
      continue
    name = complete[0].results['holdout']['name']
    title = f'{dataset}: anomaly = class {holdout} ({name})'
    label = lambda state: labels[tables.variant_key(state.run.settings)]
    path = os.path.join(out, dataset, f'holdout{holdout}_training.png')
    figures.training_curves(title, [(label(s), s.run.settings['seed'], s.results)
                                    for s in complete], path)
    written.append(path)
    scored = []
    for state in complete:
      scores_path = os.path.join(state.workdir, figures.SCORES_FILE)
      if os.path.exists(scores_path):
        with np.load(scores_path) as arrays:
          scored.append((label(state), state.run.settings['seed'], dict(arrays)))
      else:
        without_scores.append(state.run.workdir)
    if scored:
      path = os.path.join(out, dataset, f'holdout{holdout}_pr.png')
      figures.pr_curves(title, scored, path, settings.scores)
      written.append(path)
  if incomplete:
    print(f'note: {incomplete} of {len(states)} runs are not complete and are not drawn',
          file=sys.stderr)
  if without_scores:
    print(f'note: no PR curves for {len(without_scores)} runs without {figures.SCORES_FILE} '
          f'(e.g. {without_scores[0]}): `python -m tfanom.evaluate --workdir=RUN` writes it',
          file=sys.stderr)
  print(f'wrote {len(written)} figures under {out}')


def run_main():
  """The `tfanom-plot` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
