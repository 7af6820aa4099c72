"""Sweeps, the parallel runner (on a fake fast trainer), the report and the plots."""

import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from unittest import mock

import numpy as np
import pytest
from tests.helpers import own_lines, run_command_line

from experiments import paper_numbers, runner, sweep_state, named_sweeps, tables
from tfanom.config import setting_kinds
from experiments.named_sweeps import SweepRun
from tfanom.errors import UsageError
from tfanom.workdir import lock_exclusively

REPO = pathlib.Path(__file__).resolve().parents[1]

# Runs as `python -m fake_trainer --workdir=... --key=value ...`: records when it starts and ends,
# sleeps, then writes a results.json whose numbers follow from the hold-out and seed, or fails.
FAKE_TRAINER = textwrap.dedent('''
    import json, os, sys, time
    args = dict(arg[2:].split('=', 1) for arg in sys.argv[1:])
    workdir = args.pop('workdir')
    def record(event):
      with open(os.environ['FAKE_RECORD'], 'a') as handle:
        handle.write(f'{event} {time.time()} {workdir} {os.getpid()}\\n')
    record('start')
    print('fake training', flush=True)
    time.sleep(float(os.environ.get('FAKE_SECONDS', '0.4')))
    if args['holdout'] == os.environ.get('FAKE_FAIL_HOLDOUT'):
      print('fake.train: error: boom on purpose', file=sys.stderr)
      record('end')
      sys.exit(3)
    holdout, seed = int(args['holdout']), int(args['seed'])
    metrics = dict(accuracy=90.0 + seed, skew=10.0,
                   ap=dict(msp=10.0 * holdout + seed, odin=10.0 * holdout + 2 * seed))
    history = [dict(epoch=epoch, num_examples=100, num_anomalies=10,
                    train=dict(loss=2.0 / epoch, accuracy=50.0), **metrics) for epoch in (1, 2)]
    results = dict(dataset=args['dataset'], holdout=dict(index=holdout, name=f'c{holdout}'),
                   aux=args['aux'], seed=seed, evaluated_on='test', flags=args,
                   num_examples=100, num_anomalies=10, final=dict(epochs=[2], **metrics),
                   history=history, **metrics)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'results.json'), 'w') as handle:
      json.dump(results, handle)
    record('end')
''')


# Sweep definitions --------------------------------------------------------------------------

@pytest.mark.parametrize('name, count', [('table3', 60), ('table4', 60),
                                         ('table5', (12 + 10 + 9 + 6 + 6) * 2 * 3),
                                         ('table6', (12 + 10 + 9 + 6 + 6) * 2 * 3),
                                         ('table7', 30), ('smoke', 40),
                                         ('digits', 40)])
def test_sweep_sizes_and_workdirs(name, count):
  expanded = named_sweeps.expand(name)
  assert len(expanded) == count
  assert len({run.workdir for run in expanded}) == count
  for run in expanded:
    s = run.settings
    assert run.workdir == f'{s["dataset"]}/holdout{s["holdout"]}/{s["aux"]}/seed{s["seed"]}'
  assert set(setting_kinds()) >= set().union(*(run.settings for run in expanded))


def test_sweep_contents():
  assert 'cifar10/holdout9/rotation/seed2' in {run.workdir for run in named_sweeps.expand('table3')}
  assert {run.settings['dataset'] for run in named_sweeps.expand('table4')} == {'stl10'}
  table5 = {run.workdir for run in named_sweeps.expand('table5')}
  assert 'imagenet_dog/holdout11/none/seed0' in table5
  assert 'imagenet_dog/holdout12/none/seed0' not in table5
  assert 'imagenet_fungus/holdout5/rotation/seed2' in table5
  table7 = named_sweeps.expand('table7')
  assert {(r.settings['aux'], r.settings['augment']) for r in table7} == {('none', 'center_mask')}
  smoke = named_sweeps.expand('smoke')
  assert {r.settings['seed'] for r in smoke} == {0, 1}
  assert {(r.settings['dataset'], r.settings['depth'], r.settings['width']) for r in smoke} == {
      ('digits', 10, 1)}


def test_overrides_are_typed_and_checked():
  overrides = named_sweeps.parse_overrides(['epochs=5', 'rotation_weight=1', 'validation=true',
                                      'data_dir=/data'], 'table3')
  assert overrides == dict(epochs=5, aux_weight=1.0, validation=True, data_dir='/data')
  assert all(run.settings['epochs'] == 5 for run in named_sweeps.expand('table3', overrides))
  with pytest.raises(UsageError, match='epoch is not a tfanom.train flag'):
    named_sweeps.parse_overrides(['epoch=5'], 'table3')
  with pytest.raises(UsageError, match='holdout varies.*--only=holdout=3'):
    named_sweeps.parse_overrides(['holdout=3'], 'table3')
  with pytest.raises(UsageError, match='^--set: --epochs=five must be an integer$'):
    named_sweeps.parse_overrides(['epochs=five'], 'table3')
  with pytest.raises(UsageError, match='not key=value'):
    named_sweeps.parse_overrides(['epochs'], 'table3')
  with pytest.raises(UsageError, match='--sweep=table9 is unknown'):
    named_sweeps.expand('table9')
  # A setting shared by every run may be overridden, and names the workdir when it is the aux.
  first = named_sweeps.expand('table7', dict(aux='rotation'))[0]
  assert first.workdir == 'cifar10/holdout0/rotation/seed0'


@pytest.mark.parametrize('item,message', [
    ('depth=11', '--set: --depth=11 is not a Wide ResNet depth: use 6n\\+4'),
    ('augment=nope', '--set: --augment=nope is unknown: choose one of crop_flip,'),
    ('stem=', '--set: --stem= is unknown: choose one of cifar,'),
    ('rotations=', '--set: --rotations= is unknown: choose one of rot90, official'),
    ('aux_norm=', '--set: --aux_norm= is unknown: choose one of protected,'),
    ('epochs=0', '--set: --epochs=0 must be a positive integer'),
    ('lr_decay_fractions=0.9,0.1', '--set: --lr_decay_fractions=0.9,0.1 must be increasing'),
    # Each value alone is fine; the runs' settings together are not.
    ('batch_size=30', r'--batch_size=30 must be a multiple of 4 with --aux=rotation: .* \(run '
                      r'digits/holdout0/rotation/seed0 of smoke; nothing was started\)'),
    ('members=n01440764', '--members applies to it alone')])
def test_a_set_value_no_run_can_train_with_is_refused_before_any_run(item, message):
  with pytest.raises(UsageError, match=message) as raised:
    named_sweeps.expand('smoke', named_sweeps.parse_overrides([item], 'smoke'))
  assert '\n' not in str(raised.value)


def test_every_run_of_every_sweep_is_a_valid_config():
  for name in named_sweeps.SWEEPS:
    assert named_sweeps.expand(name)  # each run resolved, as tfanom.train resolves it


def test_only_selects_runs():
  chosen = named_sweeps.select(named_sweeps.expand('table3'), ['holdout=3', 'holdout=4', 'aux=none'])
  assert len(chosen) == 2 * 3
  assert {(r.settings['holdout'], r.settings['aux']) for r in chosen} == {('3', 'none'),
                                                                          ('4', 'none')}
  with pytest.raises(UsageError, match='no setting colour'):
    named_sweeps.select(named_sweeps.expand('table3'), ['colour=red'])
  with pytest.raises(UsageError, match='matches none'):
    named_sweeps.select(named_sweeps.expand('table3'), ['seed=7'])


def test_root_of_another_definition_is_refused(tmp_path):
  sweep_state.record_definition(str(tmp_path), 'smoke', named_sweeps.expand('smoke'))
  sweep_state.record_definition(str(tmp_path), 'smoke', named_sweeps.expand('smoke', dict(data_dir='/x')))
  with pytest.raises(UsageError, match=r'another sweep definition \(epochs: 3 there, 5 now\)'):
    sweep_state.record_definition(str(tmp_path), 'smoke', named_sweeps.expand('smoke', dict(epochs=5)))
  with pytest.raises(UsageError, match='sweep smoke there, table3 now'):
    sweep_state.record_definition(str(tmp_path), 'table3', named_sweeps.expand('table3'))


# The runner, on the fake trainer ------------------------------------------------------------

def sweep_argv_env(tmp_path, *args, **env):
  (tmp_path / 'fake_trainer.py').write_text(FAKE_TRAINER)
  env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{tmp_path}',
             FAKE_RECORD=str(tmp_path / 'record.txt'), **env)
  return ([sys.executable, '-m', 'experiments.sweep', '--trainer_module=fake_trainer',
           f'--root={tmp_path / "root"}', *args], env)


def sweep_cli(tmp_path, *args, fail_holdout=None):
  """The sweep command line run in this process, its runs on the fake trainer."""
  argv, env = sweep_argv_env(tmp_path, *args, **(
      {} if fail_holdout is None else dict(FAKE_FAIL_HOLDOUT=str(fail_holdout))))
  with mock.patch.dict(os.environ, env):
    return run_command_line(*argv[2:])


def events(tmp_path):
  path = tmp_path / 'record.txt'
  if not path.exists():
    return []
  return [(kind, float(when), workdir, int(pid)) for kind, when, workdir, pid in
          (line.split() for line in path.read_text().splitlines())]


def max_concurrency(recorded):
  running = peak = 0
  for kind, *_ in sorted(recorded, key=lambda event: (event[1], event[0] == 'start')):
    running += 1 if kind == 'start' else -1
    peak = max(peak, running)
  return peak


FOUR_RUNS = ('--sweep=smoke', '--only=holdout=0,holdout=1,seed=0')


def test_runner_parallel_then_skips_completed(tmp_path):
  result = sweep_cli(tmp_path, *FOUR_RUNS, '--parallel=2')
  assert result.returncode == 0, result.stderr
  assert max_concurrency(events(tmp_path)) == 2
  assert len([e for e in events(tmp_path) if e[0] == 'start']) == 4
  assert '[4/4 done, 0 running, 0 failed, 0 left' in result.stdout
  root = tmp_path / 'root'
  assert json.loads((root / 'sweep.json').read_text())['sweep'] == 'smoke'
  log = (root / 'digits/holdout1/rotation/seed0/train.log').read_text()
  assert 'fake_trainer --workdir=' in log and 'fake training' in log

  again = sweep_cli(tmp_path, *FOUR_RUNS, '--parallel=2')
  assert again.returncode == 0, again.stderr
  assert 'skipping 4 complete runs of 4' in again.stdout
  assert len([e for e in events(tmp_path) if e[0] == 'start']) == 4  # nothing ran again


def test_runner_reports_failures_and_goes_on(tmp_path):
  result = sweep_cli(tmp_path, *FOUR_RUNS, '--parallel=2', fail_holdout=1)
  assert result.returncode == 1
  assert 'FAILED digits/holdout1/none/seed0 (exit 3): fake.train: error: boom on purpose' in (
      result.stdout)
  assert '2 of 4 runs failed' in result.stdout
  root = tmp_path / 'root'
  assert (root / 'digits/holdout0/rotation/seed0/results.json').exists()
  assert not (root / 'digits/holdout1/rotation/seed0/results.json').exists()
  # Once the cause is gone, the same command runs only what failed.
  again = sweep_cli(tmp_path, *FOUR_RUNS, '--parallel=2')
  assert again.returncode == 0
  assert 'skipping 2 complete runs of 4' in again.stdout


def test_sigterm_stops_the_runs_and_a_rerun_resumes(tmp_path):
  argv, env = sweep_argv_env(tmp_path, *FOUR_RUNS, '--parallel=2', FAKE_SECONDS='60')
  sweep = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
  deadline = time.time() + 60
  while len(events(tmp_path)) < 2 and time.time() < deadline:
    time.sleep(0.2)
  sweep.send_signal(signal.SIGTERM)
  output, _ = sweep.communicate(timeout=60)
  assert sweep.returncode == 130
  assert 'interrupted: stopped 2 runs' in output
  for _, _, _, pid in events(tmp_path):
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
  assert sweep_cli(tmp_path, *FOUR_RUNS, '--parallel=2').returncode == 0


def test_runner_reruns_corrupt_results_and_keeps_other_runs(tmp_path):
  assert sweep_cli(tmp_path, *FOUR_RUNS).returncode == 0
  root = tmp_path / 'root'
  corrupt = root / 'digits/holdout0/none/seed0/results.json'
  corrupt.write_text('{"dataset": "dig')
  foreign = root / 'digits/holdout1/none/seed0/results.json'
  other = json.loads(foreign.read_text())
  other['flags']['epochs'] = '30'
  foreign.write_text(json.dumps(other))
  result = sweep_cli(tmp_path, *FOUR_RUNS)
  assert result.returncode == 1
  assert f'warning: {corrupt} is not valid JSON' in result.stderr
  assert f'{foreign} is a run with other settings (epochs=30 there, 3 now)' in result.stderr
  assert json.loads(foreign.read_text())['flags']['epochs'] == '30'  # never overwritten
  assert json.loads(corrupt.read_text())['dataset'] == 'digits'  # rerun
  assert len([e for e in events(tmp_path) if e[0] == 'start']) == 5


def test_dry_run_prints_commands_and_runs_nothing(tmp_path):
  result = sweep_cli(tmp_path, '--sweep=table3', '--dry_run', '--set=data_dir=/data,epochs=2')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert len(lines) == 60
  root = tmp_path / 'root'
  assert lines[0] == (f'{sys.executable} -m fake_trainer --workdir={root}/cifar10/holdout0/none/'
                      'seed0 --dataset=cifar10 --holdout=0 --aux=none --seed=0 --data_dir=/data '
                      '--epochs=2')
  assert not events(tmp_path)
  assert len(json.loads((root / 'sweep.json').read_text())['runs']) == 60


def test_bad_sweep_input_is_one_line_and_exit_2(tmp_path):
  for args, message in [(('--sweep=nope',), '--sweep=nope is unknown'),
                        (('--sweep=smoke', '--set=colour=red'), 'colour is not a tfanom.train'),
                        (('--sweep=smoke', '--only=seed=9'), 'matches none'),
                        (('--sweep=smoke', '--set=depth=11'), '--depth=11 is not a Wide ResNet'),
                        (('--sweep=smoke', '--dry_run', '--set=batch_size=30'),
                         '--batch_size=30 must be a multiple of 4'),
                        (('--sweep=smoke', '--parallel=two'), '--parallel=two: invalid literal')]:
    result = sweep_cli(tmp_path, *args)
    assert result.returncode == 2
    lines = own_lines(result.stderr)
    assert len(lines) == 1
    assert lines[0].startswith('experiments.sweep: error: ') and message in lines[0]
    # Nothing ran and nothing was written: the corrected command starts the sweep there.
    assert not events(tmp_path) and not (tmp_path / 'root').exists()


def test_a_run_another_sweep_trains_is_waited_for_and_counted_complete(tmp_path, monkeypatch):
  (tmp_path / 'fake_trainer.py').write_text(FAKE_TRAINER)
  monkeypatch.setenv('PYTHONPATH', f'{REPO}{os.pathsep}{tmp_path}')
  monkeypatch.setenv('FAKE_RECORD', str(tmp_path / 'record.txt'))
  root = tmp_path / 'root'
  held, free = [sweep_state.run_state(str(root), run) for run in named_sweeps.select(
      named_sweeps.expand('smoke'), ['holdout=0', 'holdout=1', 'seed=0', 'aux=none'])]
  os.makedirs(held.workdir)
  other_sweep = open(held.log_path, 'a')  # another sweep training `held`
  assert lock_exclusively(other_sweep)
  lines = []

  def log(line):
    lines.append(line)
    if f'done {free.run.workdir}' in line:  # meanwhile the other sweep finishes its run
      write_results(root, held.run, 1.0, 1.0, 90.0)
      other_sweep.close()

  failures = runner.run_all([held, free], parallel=2, total=2, log=log,
                            command=functools.partial(runner.train_command, module='fake_trainer'))
  assert failures == []
  assert [workdir for kind, _, workdir, _ in events(tmp_path) if kind == 'start'] == [
      free.workdir]  # `held` was never started here
  assert [line for line in lines if 'waiting for' in line] == [
      '[0/2 done, 0 running, 0 failed, 2 left | 0m00s elapsed, time left unknown yet] waiting '
      f'for {held.run.workdir}: another experiments.sweep is training it']
  assert lines[-1].startswith('[2/2 done, 0 running, 0 failed, 0 left') and lines[-1].endswith(
      f'done {held.run.workdir} by another process')
  assert pathlib.Path(held.log_path).read_text() == ''  # this sweep wrote nothing into its log


def test_two_sweeps_on_one_root_train_each_run_once_and_both_succeed(tmp_path):
  argv, env = sweep_argv_env(tmp_path, *FOUR_RUNS, FAKE_SECONDS='1')
  first, second = [subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(2)]
  outputs = [sweep.communicate(timeout=120) for sweep in (first, second)]
  assert (first.returncode, second.returncode) == (0, 0), outputs
  starts = [workdir for kind, _, workdir, _ in events(tmp_path) if kind == 'start']
  assert len(starts) == len(set(starts)) == 4
  for workdir in starts:
    headers = [line for line in (pathlib.Path(workdir) / 'train.log').read_text().splitlines()
               if line.startswith('=== ')]
    assert len(headers) == 1, workdir  # one process wrote into each log
  for output, _ in outputs:
    assert '4/4 done' in output or 'skipping 4 complete runs of 4' in output


# The report ---------------------------------------------------------------------------------

def write_results(root, run: SweepRun, msp, odin, accuracy, final=True):
  metrics = dict(accuracy=accuracy, skew=10.0, ap=dict(msp=msp, odin=odin))
  holdout = int(run.settings['holdout'])
  results = dict(dataset=run.settings['dataset'], holdout=dict(index=holdout, name=f'c{holdout}'),
                 aux=run.settings['aux'], seed=run.settings['seed'], flags=dict(run.settings),
                 final=dict(epochs=[3], **metrics) if final else {},
                 history=[dict(epoch=3, **metrics)], **metrics)
  path = pathlib.Path(root) / run.workdir / 'results.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(results))


def usable_of(states):
  return {s.run.workdir: tables.run_metrics(s.results) for s in states if s.status == 'complete'}


def test_report_aggregates_mean_std_and_average(tmp_path):
  chosen = named_sweeps.select(named_sweeps.expand('smoke'), ['holdout=0', 'holdout=1'])
  # MSP per (holdout, seed); the other metrics are fixed offsets of it.
  msp = {('0', 0): 10.0, ('0', 1): 20.0, ('1', 0): 30.0, ('1', 1): 10.0}
  for run in chosen:
    value = msp[(run.settings['holdout'], run.settings['seed'])]
    value += 1.0 if run.settings['aux'] == 'rotation' else 0.0
    write_results(tmp_path, run, value, value + 2, 90.0)
  states = [sweep_state.run_state(str(tmp_path), run) for run in chosen]
  table = tables.build_table('smoke', states, usable_of(states), compare=False)
  assert [label for label, _ in table.rows] == ['c0', 'c1', 'Average']
  by_label = dict(table.rows)
  c0_msp, c1_msp, average_msp = by_label['c0'][0], by_label['c1'][0], by_label['Average'][0]
  assert (c0_msp.mean, c0_msp.std) == (15.0, 5.0)
  assert (c1_msp.mean, c1_msp.std) == (20.0, 10.0)
  # Class means 15 and 20; per-trial class averages 20 (seed 0) and 15 (seed 1).
  assert (average_msp.mean, average_msp.std) == (17.5, 2.5)
  assert by_label['Average'][3].mean == 18.5  # rotation MSP
  assert by_label['Average'][2].std == 0.0  # accuracy identical across trials

  markdown = tables.to_markdown(table)
  assert ('| Anomaly | Classification-only MSP | Classification-only ODIN | Classification-only '
          'Accuracy | Rotation-augmented MSP |') in markdown
  assert '| Average | 17.50 ± 2.50 | 19.50 ± 2.50 | 90.00 ± 0.00 | 18.50 ± 2.50 |' in markdown
  latex = tables.to_latex(table)
  assert (r'\multicolumn{3}{c}{Classification-only} & \multicolumn{3}{c}{Rotation-augmented}'
          in latex)
  assert r'c0 & $15.00 \pm 5.00$ & $17.00 \pm 5.00$ & $90.00 \pm 0.00$' in latex
  csv_text = tables.to_csv(table)
  assert csv_text.splitlines()[0].startswith('Anomaly,Classification-only MSP mean,'
                                             'Classification-only MSP std,Classification-only '
                                             'MSP runs,Classification-only MSP expected')
  assert 'Average,17.5000,2.5000,4,4,' in csv_text


def test_report_marks_incomplete_and_fallback(tmp_path):
  chosen = named_sweeps.select(named_sweeps.expand('smoke'), ['holdout=0', 'holdout=1', 'aux=none'])
  for run in chosen:
    if (run.settings['holdout'], run.settings['seed']) != ('1', 1):
      write_results(tmp_path, run, 10.0 + run.settings['seed'], 12.0, 90.0,
                    final=run.settings['holdout'] != '0')
  states = [sweep_state.run_state(str(tmp_path), run) for run in chosen]
  table = tables.build_table('smoke', states, usable_of(states), compare=False)
  by_label = dict(table.rows)
  assert by_label['c1'][0].mean == 10.0 and by_label['c1'][0].std is None
  markdown = tables.to_markdown(table)
  assert '| c1 | 10.00 (1/2) |' in markdown
  # Only seed 0 is complete for every class: no ± from one trial, and the row is marked.
  assert '| Average | 10.25 (3/4)† |' in markdown
  assert any(note.startswith('(k/n): only k of the n runs') for note in table.notes)
  assert any(note.startswith('†: some runs have an empty `final`') for note in table.notes)


def report_cli(root, *args):
  return run_command_line('experiments.report', f'--root={root}', *args)


def test_report_compares_with_the_paper(tmp_path):
  all_runs = named_sweeps.expand('table3')
  sweep_state.record_definition(str(tmp_path), 'table3', all_runs)
  for run in all_runs:
    if run.settings['holdout'] == '3':
      write_results(tmp_path, run, 40.0, 41.0, 96.0)
  (tmp_path / all_runs[0].workdir / 'results.json').parent.mkdir(parents=True)
  (tmp_path / all_runs[0].workdir / 'results.json').write_text('not json')
  result = report_cli(tmp_path, '--compare=paper')
  assert result.returncode == 0, result.stderr
  assert 'cifar10/holdout0/none/seed0/results.json is not valid JSON' in result.stderr
  assert 'paper: Table 3 of Ahmed & Courville (2020)' in result.stdout
  # cat (class 3), classification-only: ours 40, paper 38.06 ± 1.31.
  assert ('| c3 | 40.00 ± 0.00 | 38.06 ± 1.31 | +1.94 | 41.00 ± 0.00 | 38.97 ± 1.43 | +2.03 |'
          in result.stdout)
  assert '| airplane | – | 43.30 ± 1.13 | – |' in result.stdout
  assert '| Average | 40.00 (3/30) | 34.92 ± 0.41 | +5.08 |' in result.stdout
  csv_result = report_cli(tmp_path, '--compare=paper', '--format=csv')
  assert 'Average,40.0000,,3,30,34.9200,0.4100,5.0800,' in csv_result.stdout


def test_report_puts_more_scores_beside_msp_and_odin(tmp_path):
  chosen = named_sweeps.select(named_sweeps.expand('smoke'), ['holdout=0', 'aux=rotation'])
  sweep_state.record_definition(str(tmp_path), 'smoke', chosen)
  for run in chosen:
    write_results(tmp_path, run, 10.0, 12.0, 90.0)
    if run.settings['seed'] == 0:  # seed 1 was never evaluated
      evaluation = dict(scores=dict(rotpred=dict(ap=33.0, auroc=80.0), knn=dict(ap=21.0)))
      (tmp_path / run.workdir / 'eval.json').write_text(json.dumps(evaluation))
  result = report_cli(tmp_path, '--scores=rotpred,knn')
  assert result.returncode == 0, result.stderr
  assert ('| Anomaly | Rotation-augmented MSP | Rotation-augmented ODIN | Rotation-augmented '
          'rotpred | Rotation-augmented knn | Rotation-augmented Accuracy |') in result.stdout
  assert '| c0 | 10.00 (1/2) | 12.00 (1/2) | 33.00 (1/2) | 21.00 (1/2) | 90.00 (1/2) |' in (
      result.stdout)
  assert "rotpred, knn: the AP in each run's eval.json" in result.stdout
  assert 'has no readable eval.json' in result.stderr
  assert 'python -m tfanom.evaluate --workdir=' in result.stderr
  bad = report_cli(tmp_path, '--scores=rotpred,nope')
  assert bad.returncode == 2 and 'unknown score nope' in bad.stderr
  assert len(own_lines(bad.stderr)) == 1


def test_report_one_row_per_dataset_with_skew(tmp_path):
  chosen = named_sweeps.select(named_sweeps.expand('table5'), ['dataset=imagenet_spider',
                                                   'dataset=imagenet_fungus', 'seed=0'])
  for run in chosen:
    write_results(tmp_path, run, 20.0 + int(run.settings['holdout']), 25.0, 70.0)
  states = [sweep_state.run_state(str(tmp_path), run) for run in chosen]
  table = tables.build_table('table5', states, usable_of(states), compare=True)
  assert [label for label, _ in table.rows] == ['imagenet_spider', 'imagenet_fungus']
  skew, msp = table.rows[0][1][:2]
  assert (skew.mean, skew.paper) == (10.0, (16.67, None))
  assert msp.mean == 22.5 and msp.paper == paper_numbers.paper_value(
      'table5', 'imagenet_spider', 'none', 'msp') == (21.20, 0.56)


def test_bad_report_input(tmp_path):
  # `python -m experiments.report` itself: the only report test in a process of its own.
  result = subprocess.run([sys.executable, '-m', 'experiments.report', f'--root={tmp_path}'],
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert 'holds no sweep.json' in result.stderr and len(own_lines(result.stderr)) == 1
  sweep_state.record_definition(str(tmp_path), 'smoke', named_sweeps.expand('smoke'))
  result = report_cli(tmp_path, '--compare=paper')
  assert result.returncode == 2 and 'sweep smoke, which has no table in the paper' in result.stderr


# Paired studies -----------------------------------------------------------------------------

def reference_interval(differences):
  """Mean ± t · s / √n by hand, with scipy's t quantile."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  d = np.asarray(differences, float)
  half = stats.t.ppf(0.975, len(d) - 1) * np.sqrt(np.sum((d - d.mean()) ** 2) / (len(d) - 1)) / \
      np.sqrt(len(d))
  return d.mean(), d.mean() - half, d.mean() + half


# Per pair of rotation_fast (class, seed): the none model's MSP AP and rotation's gain; ODIN is
# MSP + 3 in both, so its differences equal MSP's.
PAIR_AP = {('cat', 0): (20.0, 1.0), ('cat', 1): (22.0, -2.0), ('dog', 0): (15.0, 4.0),
           ('dog', 1): (16.0, 0.5), ('frog', 0): (30.0, 3.0), ('frog', 1): (28.0, 2.5)}


def paired_value(run, offset=0.0):
  none, gain = PAIR_AP[(run.settings['holdout'], run.settings['seed'])]
  return none + offset + (gain if run.settings['aux'] == 'rotation' else 0.0)


def write_paired_results(root, run):
  """results.json of a rotation_fast run: AP from PAIR_AP, correct-only AP 10 points above."""
  msp = paired_value(run)
  metrics = dict(accuracy=85.0 + (1.0 if run.settings['aux'] == 'rotation' else 0.0), skew=10.0,
                 ap=dict(msp=msp, odin=msp + 3), ap_correct_only=dict(msp=msp + 10, odin=msp + 13),
                 misclassification_auroc=dict(msp=80.0, odin=None))
  results = dict(dataset='folder', holdout=dict(index=3, name=run.settings['holdout']),
                 aux=run.settings['aux'], seed=run.settings['seed'], flags=dict(run.settings),
                 final=dict(epochs=[5], **metrics), history=[dict(epoch=5, **metrics)], **metrics)
  path = pathlib.Path(root) / run.workdir / 'results.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(results))


def test_paired_study_on_results_json_matches_a_hand_t_interval(tmp_path):
  runs = named_sweeps.expand('rotation_fast')
  for run in runs:
    write_paired_results(tmp_path, run)
  states = [sweep_state.run_state(str(tmp_path), run) for run in runs]
  figures = {s.run.workdir: {'results.json': tables.figures_of_results(s.results),
                             'eval.json': None} for s in states}
  study = tables.paired_study('rotation_fast', states, figures)
  rows = {(row.figure, row.score): row for row in study.rows}
  assert list(rows) == [('AP', 'msp'), ('AP', 'odin'), ('APc', 'msp'), ('APc', 'odin'),
                        ('accuracy', ''), ('errAUROC', 'msp')]
  gains = [gain for _, gain in PAIR_AP.values()]
  mean, low, high = reference_interval(gains)
  for key in (('AP', 'msp'), ('AP', 'odin'), ('APc', 'msp')):
    difference = rows[key].difference
    assert difference.count == 6
    assert (difference.mean, difference.low, difference.high) == pytest.approx((mean, low, high))
  assert rows[('AP', 'msp')].none.mean == pytest.approx(np.mean([n for n, _ in PAIR_AP.values()]))
  # Identical differences: a zero-width interval.
  accuracy = rows[('accuracy', '')].difference
  assert (accuracy.mean, accuracy.low, accuracy.high) == pytest.approx((1.0, 1.0, 1.0))
  best_ap, best_correct = study.best
  assert (best_ap.figure, best_ap.none_score, best_ap.rotation_score) == ('AP', 'odin', 'odin')
  assert (best_ap.difference.mean, best_ap.difference.low) == pytest.approx((mean, low))
  assert best_correct.figure == 'APc'
  assert [pair.label for pair in study.pairs] == [
      f'holdout={holdout}, seed={seed}' for seed in (0, 1) for holdout in ('cat', 'dog', 'frog')]
  assert (study.pairs[2].none['ap'], study.pairs[2].rotation['ap']) == (
      dict(msp=30.0, odin=33.0), dict(msp=33.0, odin=36.0))
  # A missing member leaves its pair out.
  del figures[runs[0].workdir]
  study = tables.paired_study('rotation_fast', states, figures)
  assert study.rows[0].difference.count == 5
  assert [pair.label for pair in study.pairs][:2] == ['holdout=dog, seed=0', 'holdout=frog, seed=0']
  assert tables.paired_study('smoke', [s for s in states if s.run.settings['aux'] == 'none'],
                             figures) is None


def write_evaluation(root, run, scores, correct_only=True):
  """eval.json of `run`: per score, AP = PAIR_AP's MSP value + the score's offset."""
  evaluation = dict(accuracy=85.0, skew=10.0, scores={
      name: dict(ap=paired_value(run, offset), auroc=70.0,
                 **(dict(ap_correct_only=paired_value(run, offset) + 5, auroc_correct_only=75.0,
                         misclassification_auroc=80.0) if correct_only else {}))
      for name, offset in scores.items()})
  (pathlib.Path(root) / run.workdir / 'eval.json').write_text(json.dumps(evaluation))


def test_paired_report_reads_eval_json_scores_npz_and_results_json(tmp_path):
  runs = named_sweeps.expand('rotation_fast')
  sweep_state.record_definition(str(tmp_path), 'rotation_fast', runs)
  none_scores = dict(msp=0.0, odin=3.0, knn=6.0)
  rotation_scores = dict(none_scores, rotation=-5.0, rotpred=7.0)
  rng = np.random.default_rng(0)
  npz_run = None
  for run in runs:
    write_paired_results(tmp_path, run)
    key = (run.settings['holdout'], run.settings['seed'])
    rotation = run.settings['aux'] == 'rotation'
    if key == ('cat', 0) and rotation:
      continue  # this pair has one eval.json only: it is compared on results.json
    if key == ('dog', 1) and not rotation:
      # An eval.json from before the correct-only figures, with its scores.npz.
      write_evaluation(tmp_path, run, none_scores, correct_only=False)
      label = rng.integers(-1, 3, 400)
      arrays = dict(label=label, prediction=np.where(rng.random(400) < 0.2, 0, label.clip(0)),
                    **{name: rng.random(400) + (label < 0) for name in none_scores})
      np.savez(tmp_path / run.workdir / 'scores.npz', is_anomaly=label < 0, **arrays)
      npz_run = (run, arrays)
      continue
    write_evaluation(tmp_path, run, rotation_scores if rotation else none_scores)
  result = report_cli(tmp_path, '--paired')
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert 'correct-only figures computed from scores.npz' in result.stderr
  # knn: eval.json pairs only (5); its AP differences are MSP's gains except for the npz pair.
  run, arrays = npz_run
  from tfanom.anomaly import metrics  # pylint: disable=g-import-not-at-top
  npz_knn = metrics.score_metrics(arrays['label'], arrays['prediction'],
                                  dict(knn=arrays['knn']))['knn']
  gains = {key: gain for key, (_, gain) in PAIR_AP.items() if key != ('cat', 0)}
  rotation_knn = {key: none + gain + 6.0 for key, (none, gain) in PAIR_AP.items()}
  knn_differences = [gains[key] if key != ('dog', 1) else rotation_knn[key] - npz_knn['ap']
                     for key in gains]
  mean, low, high = reference_interval(knn_differences)
  assert '| AP | knn | 5 | ' in out
  assert f'| {mean:+.2f} | [{low:+.2f}, {high:+.2f}] |' in out
  correct_differences = [gains[key] if key != ('dog', 1)
                         else rotation_knn[key] + 5 - npz_knn['ap_correct_only'] for key in gains]
  mean, low, high = reference_interval(correct_differences)
  assert '| APc | knn | 5 | ' in out and f'| {mean:+.2f} | [{low:+.2f}, {high:+.2f}] |' in out
  # MSP: all 6 pairs (5 on eval.json, 1 on results.json); rotpred on the rotation side only.
  assert '| AP | msp | 6 | ' in out
  assert '| AP | rotpred | – | – | ' in out
  # Best scores among those every pair has (the results.json pair has MSP and ODIN only).
  assert '| AP | 6 | odin | ' in out and '5 of 6' not in out
  assert '6 of 6 pairs complete' in out and '5 compared on eval.json' in out
  # Pair by pair: MSP, rotation and rotpred (no run has energy); the best score of each run.
  assert '| pair | model | accuracy | msp | rotation | rotpred | best score |' in out
  assert '| holdout=cat, seed=0 | none | 85.00 | 20.00 | – | – | odin 23.00 |' in out
  assert '| holdout=cat, seed=0 | rotation | 86.00 | 21.00 | – | – | odin 24.00 |' in out
  assert '| holdout=dog, seed=0 | rotation | 85.00 | 19.00 | 14.00 | 26.00 | rotpred 26.00 |' in out
  csv_out = report_cli(tmp_path, '--paired', '--format=csv').stdout.splitlines()
  assert csv_out[0] == 'figure,score,pairs,none_mean,rotation_mean,difference,low,high'
  runs_at = csv_out.index('pair,model,accuracy,ap_msp,ap_odin,ap_knn,ap_rotation,ap_rotpred')
  assert csv_out[runs_at + 1:runs_at + 3] == [
      '"holdout=cat, seed=0",none,85.0000,20.0000,23.0000,,,',
      '"holdout=cat, seed=0",rotation,86.0000,21.0000,24.0000,,,']
  assert len(csv_out) == runs_at + 1 + 12
  bad = report_cli(tmp_path, '--paired', '--compare=paper')
  assert bad.returncode == 2 and len(own_lines(bad.stderr)) == 1


def test_paired_report_of_a_root_without_pairs(tmp_path):
  runs = named_sweeps.select(named_sweeps.expand('smoke'), ['aux=none'])
  sweep_state.record_definition(str(tmp_path), 'smoke', runs)
  result = report_cli(tmp_path, '--paired')
  assert result.returncode == 2 and 'holds no --aux=none / --aux=rotation pair' in result.stderr
  assert len(own_lines(result.stderr)) == 1


# Plots --------------------------------------------------------------------------------------

def test_plots_are_written(tmp_path):
  assert sweep_cli(tmp_path, '--sweep=smoke', '--only=holdout=2,seed=0').returncode == 0
  root = tmp_path / 'root'
  rng = np.random.default_rng(0)
  is_anomaly = rng.random(200) < 0.1
  np.savez(root / 'digits/holdout2/rotation/seed0/scores.npz', is_anomaly=is_anomaly,
           msp=rng.random(200) + is_anomaly, odin=rng.random(200) + 0.5 * is_anomaly,
           label=np.where(is_anomaly, -1, 0))
  result = run_command_line('experiments.plot', f'--root={root}')
  assert result.returncode == 0, result.stderr
  assert 'no PR curves for 1 runs without scores.npz' in result.stderr
  for name in ('holdout2_training.png', 'holdout2_pr.png'):
    data = (root / 'plots/digits' / name).read_bytes()
    assert data.startswith(b'\x89PNG\r\n\x1a\n') and len(data) > 10_000


# The real trainer ---------------------------------------------------------------------------

# Runs as `python -m cut_trainer FLAGS`: tfanom.train's own command line, its split cut to one
# training step of 128 images and 100 evaluation examples; the run then took 12 s of CPU rather
# than 22 s (9 steps over the full split's 1213 images, 450 evaluation examples).
CUT_TRAINER = textwrap.dedent('''
    from tests.helpers import first_examples
    from tfanom import train
    from tfanom.training import run
    load_split = run.load_split
    run.load_split = lambda config: first_examples(load_split(config), 128, 100)
    train.run_main()
''')


def test_one_real_run_is_complete_and_skipped(tmp_path):
  """The real tfanom.train: its flags, results.json and TensorBoard summaries fit the runner."""
  (tmp_path / 'cut_trainer.py').write_text(CUT_TRAINER)
  root = tmp_path / 'root'
  args = ['experiments.sweep', '--sweep=smoke', f'--root={root}', '--trainer_module=cut_trainer',
          '--only=holdout=0,aux=none,seed=0', '--set=epochs=1,final_window=1']
  with mock.patch.dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{tmp_path}'):
    first = run_command_line(*args)
  assert first.returncode == 0, first.stdout + first.stderr
  run, = named_sweeps.select(named_sweeps.expand('smoke', dict(epochs=1, final_window=1)),
                       ['holdout=0', 'aux=none', 'seed=0'])
  assert sweep_state.run_state(str(root), run).status == 'complete'
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # slow: only this test needs it
  tags = {value.tag for path in (root / run.workdir / 'tensorboard').glob('events.out.tfevents.*')
          for event in tf.compat.v1.train.summary_iterator(str(path))
          for value in event.summary.value}
  assert tags >= {'train/loss', 'train/accuracy', 'train/learning_rate', 'eval/accuracy',
                  'eval/ap_msp', 'eval/ap_odin'}
  with mock.patch.dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{tmp_path}'):
    second = run_command_line(*args)
  assert 'skipping 1 complete runs of 1' in second.stdout
