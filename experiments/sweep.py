r"""Runs a named sweep of `tfanom.train` runs, N at a time; rerunning it resumes and skips.

  python -m experiments.sweep --sweep=smoke --root=/tmp/smoke --parallel=2
  python -m experiments.sweep --sweep=table3 --root=runs/table3 --parallel=4 \
      --set=data_dir=~/tensorflow_datasets
  python -m experiments.sweep --sweep=table3 --root=runs/table3 --dry_run > jobs.txt

Each run trains in ROOT/<dataset>/holdout<k>/<aux>/seed<s> (its output in train.log there). A run
whose results.json is complete is skipped; any other run is (re)started with the same command,
which resumes from its checkpoints. --set overrides tfanom.train flags for every run; every run's
settings are checked as tfanom.train checks them before any run starts, then recorded in
ROOT/sweep.json, and a root holding another sweep definition is refused. A run that another sweep
on the same root is training is waited for, and complete once that sweep finishes it.
Exit status: 0 when every run is complete, 1 when any failed, 2 for a usage error.
"""

import functools
import shlex
import signal
import sys

from absl import app, flags

from tfanom.cli.flags import run_command

from . import named_sweeps


def command(flag_values=flags.FLAGS):
  """Defines the sweep's flags in `flag_values`; returns its main."""
  flags.DEFINE_string('sweep', None, f'The sweep to run: {", ".join(named_sweeps.SWEEPS)} (see '
                      'experiments/named_sweeps.py).', flag_values=flag_values)
  flags.DEFINE_string('root', None, 'Directory holding the sweep: sweep.json and one workdir per '
                      'run.', flag_values=flag_values)
  flags.DEFINE_integer('parallel', 1, 'Runs trained at once, as separate processes.',
                       flag_values=flag_values)
  flags.DEFINE_bool('dry_run', False, 'Print one command per pending run (for a batch scheduler) '
                    'and record sweep.json, instead of running them.', flag_values=flag_values)
  flags.DEFINE_list('only', [], 'key=value,...: run only the runs with these settings; a key given '
                    'twice matches either value (--only=holdout=0,holdout=1).',
                    flag_values=flag_values)
  flags.DEFINE_list('set', [], 'key=value,...: tfanom.train flags for every run, e.g. '
                    '--set=epochs=5,batch_size=64,data_dir=DIR (every run is checked as '
                    'tfanom.train checks it before any starts).', flag_values=flag_values)
  flags.DEFINE_string('trainer_module', 'tfanom.train', 'The module each run executes as '
                      '`python -m MODULE --workdir=... --key=value`.', flag_values=flag_values)
  return functools.partial(main, settings=flag_values)


def _interrupt(signum, frame):
  del signum, frame
  raise KeyboardInterrupt


def main(argv, settings):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # Imported after flag parsing: they import tfanom.train, whose flags must not be accepted here.
  from . import runner, sweep_state  # pylint: disable=g-import-not-at-top
  from tfanom.errors import UsageError, reported_as_one_line  # pylint: disable=g-import-not-at-top
  with reported_as_one_line('experiments.sweep'):
    if settings.sweep is None or settings.root is None:
      raise UsageError('--sweep and --root are required, e.g. --sweep=smoke --root=/tmp/smoke')
    if settings.parallel < 1:
      raise UsageError(f'--parallel={settings.parallel} must be a positive integer')
    all_runs = named_sweeps.expand(settings.sweep,
                                   named_sweeps.parse_overrides(settings.set, settings.sweep))
    chosen = named_sweeps.select(all_runs, settings.only) if settings.only else all_runs
    try:
      sweep_state.record_definition(settings.root, settings.sweep, all_runs)
    except OSError as error:
      raise UsageError(f'cannot write --root={settings.root} ({error}): choose a writable '
                       'directory') from None

  states = [sweep_state.run_state(settings.root, run) for run in chosen]
  for state in states:
    if state.status == 'invalid':
      print(f'warning: {state.problem}: rerunning it', file=sys.stderr)
  conflicts = [state for state in states if state.status == 'conflict']
  pending = [state for state in states if state.status in ('missing', 'invalid')]
  skipped = len(states) - len(pending) - len(conflicts)
  command = functools.partial(runner.train_command, module=settings.trainer_module)
  failures = []
  if settings.dry_run:
    print(f'# {len(pending)} pending runs of {len(states)} ({skipped} complete)', file=sys.stderr)
    for state in pending:
      print(shlex.join(command(state.run, state.workdir)))
  else:
    if skipped:
      print(f'skipping {skipped} complete runs of {len(states)}', flush=True)
    # A scheduler's SIGTERM stops the runs as Ctrl-C does, rather than orphaning them.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
      failures = runner.run_all(pending, settings.parallel, total=len(states) - len(conflicts),
                                command=command, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
      sys.exit(130)
    if failures:
      print(f'{len(failures)} of {len(states)} runs failed:')
      for failure in failures:
        print(f'  {failure}')
  for state in conflicts:
    print(f'experiments.sweep: error: {state.problem}', file=sys.stderr)
  if conflicts or failures:
    sys.exit(1)


def run_main():
  """The `tfanom-sweep` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
