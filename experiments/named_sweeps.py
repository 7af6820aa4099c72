"""Named sweeps: each is a function returning the settings of its runs, one dict of
`tfanom.train` flags per run. `SWEEPS` is the registry the command line chooses from.

A run's workdir under the sweep root is named by the settings that tell runs apart
(`<dataset>/holdout<k>/<aux>/seed<s>`); settings shared by every run of a sweep (e.g.
`--augment=center_mask` in table7) are recorded in ROOT/sweep.json instead.
"""

import dataclasses

from tfanom.data.subsets import SUBSETS

from tfanom.config import RENAMED, TrainConfig, format_value, parse_setting, setting_kinds
from tfanom.errors import UsageError
from tfanom.workdir import run_path

SEEDS = (0, 1, 2)  # the paper reports mean ± std over 3 trials
AUXES = ('none', 'rotation')  # the classification-only and rotation-augmented columns
# The paper's ImageNet subsets (Table 1) by dataset name, with their number of members: every
# member is held out in turn.
SUBSET_SIZES = {f'imagenet_{name}': len(members) for name, members in SUBSETS.items()}
# Settings that tell the runs of a sweep apart; together they name the run's workdir.
RUN_KEYS = ('dataset', 'holdout', 'aux', 'seed')


@dataclasses.dataclass(frozen=True)
class SweepRun:
  workdir: str  # relative to the sweep root
  settings: dict  # tfanom.train flag -> value


def holdout_runs(dataset: str, num_classes: int, auxes=AUXES, seeds=SEEDS, **shared) -> list[dict]:
  """Every class held out in turn, under each auxiliary task and seed.

  Seeds vary slowest, so a partly finished sweep already has one trial of every class.
  """
  return [dict(dataset=dataset, holdout=str(holdout), aux=aux, seed=seed, **shared)
          for seed in seeds for holdout in range(num_classes) for aux in auxes]


def table3() -> list[dict]:
  """CIFAR-10, Table 3 (and Table 7's base and rotation rows)."""
  return holdout_runs('cifar10', 10)


def table4() -> list[dict]:
  """STL-10, Table 4."""
  return holdout_runs('stl10', 10)


def table5() -> list[dict]:
  """The five ImageNet subsets, Table 5: averaged over members in the report."""
  return [run for dataset, members in SUBSET_SIZES.items()
          for run in holdout_runs(dataset, members)]


def table6() -> list[dict]:
  """The five ImageNet subsets with CPC as the auxiliary task, Table 6. Both columns use the
  same network (reflection padding, as CPC needs), so the comparison isolates CPC."""
  return [run for dataset, members in SUBSET_SIZES.items()
          for run in holdout_runs(dataset, members, auxes=('none', 'cpc'), padding='reflect')]


def table7() -> list[dict]:
  """CIFAR-10 with random 16x16 masks in the central 21x21 region, Table 7's middle row."""
  return holdout_runs('cifar10', 10, auxes=('none',), augment='center_mask')


def smoke() -> list[dict]:
  """The machinery on any machine: tiny networks on `digits`, 3 epochs; each run takes about half
  a minute on 2 CPU cores, mostly tracing and evaluation."""
  return holdout_runs('digits', 10, seeds=(0, 1), depth=10, width=1, epochs=3, final_window=2)


def digits() -> list[dict]:
  """Every digit held out in turn at the dataset's defaults (WRN-10-2, 15 epochs), two seeds: the
  runs behind the score comparison of docs/scores.md and the export's default score."""
  return holdout_runs('digits', 10, seeds=(0, 1))


# The CIFAR-10 classes with the paper's three largest rotation gains (Table 3, MSP AP: cat +15.1,
# frog +11.5, dog +6.7): where the paper's effect is largest, a paired study can see it soonest.
STUDY_CLASSES = ('cat', 'dog', 'frog')


def paired_runs(holdouts, seeds, **shared) -> list[dict]:
  """`--aux=none` and `--aux=rotation` on the same classes and seeds, pair by pair: seeds vary
  slowest, and both members of a pair run one after the other, so a partly finished study is a
  set of complete pairs."""
  return [dict(holdout=holdout, aux=aux, seed=seed, **shared)
          for seed in seeds for holdout in holdouts for aux in AUXES]


def rotation_small() -> list[dict]:
  """The paired study in the small-data regime: CIFAR-10 as an image folder of 500 training images
  per class (--data_dir, see docs/results.md), WRN-16-2, dropout 0.3, batch 128, 40 epochs,
  3 classes x 3 seeds. With a tenth of the data a regulariser has the most room to act."""
  return paired_runs(STUDY_CLASSES, SEEDS, dataset='folder', depth=16, width=2, dropout=0.3,
                     batch_size=128, epochs=40, eval_every=0, final_window=1)


def rotation_fast() -> list[dict]:
  """The paired study with `--preset=fast` on the whole CIFAR-10 folder, 5 epochs, flip TTA,
  3 classes x 2 seeds."""
  return paired_runs(STUDY_CLASSES, SEEDS[:2], dataset='folder', preset='fast', epochs=5,
                     tta='flip', eval_every=0, final_window=1)


def rotation_paper() -> list[dict]:
  """The paired study at the paper's own budget: TFDS CIFAR-10 at its defaults (WRN-28-10,
  200 epochs, batch 512), the same 3 classes x 3 seeds: for a GPU (docs/results.md has the
  arithmetic of its cost)."""
  return paired_runs(STUDY_CLASSES, SEEDS, dataset='cifar10')


SWEEPS = {'table3': table3, 'table4': table4, 'table5': table5, 'table6': table6, 'table7': table7,
          'smoke': smoke, 'digits': digits, 'rotation_small': rotation_small,
          'rotation_fast': rotation_fast, 'rotation_paper': rotation_paper}


def run_workdir(settings: dict) -> str:
  return run_path(settings['dataset'], settings['holdout'], settings['aux'], settings['seed'])


def parse_assignments(items, option: str) -> list[tuple[str, str]]:
  """`key=value` strings (one --set/--only list) as pairs."""
  pairs = []
  for item in items:
    key, equals, value = item.partition('=')
    if not equals or not key:
      raise UsageError(f'--{option}: {item!r} is not key=value: write e.g. '
                       f'--{option}=epochs=5,batch_size=64')
    pairs.append((key.strip(), value.strip()))
  return pairs


def sweep_settings(sweep: str) -> list[dict]:
  if sweep not in SWEEPS:
    raise UsageError(f'--sweep={sweep} is unknown: choose one of {", ".join(SWEEPS)}')
  return SWEEPS[sweep]()


def parse_overrides(items, sweep: str) -> dict:
  """`--set` items as typed `tfanom.train` flag values, checked against the sweep's runs."""
  known = setting_kinds()
  varying = _varying_keys(sweep_settings(sweep))
  overrides = {}
  for key, text in parse_assignments(items, 'set'):
    key = RENAMED.get(key, key)  # an old name of a setting, as its flag alias accepts
    if key not in known:
      raise UsageError(f'--set={key}={text}: {key} is not a tfanom.train flag (see '
                       '`python -m tfanom.train --help`)')
    if key == 'workdir':
      raise UsageError('--set=workdir=...: the sweep names each workdir; choose --root instead')
    if key in varying:
      raise UsageError(f'--set={key}={text}: {key} varies across the runs of {sweep}; select '
                       f'runs with --only={key}={text} instead')
    try:
      overrides[key] = parse_setting(key, text)
    except UsageError as error:
      raise UsageError(f'--set: {error}') from None
  return overrides


def expand(sweep: str, overrides: dict | None = None) -> list[SweepRun]:
  """The runs of a named sweep, with `overrides` applied to every run, each checked as
  tfanom.train would check it (`TrainConfig.resolved()`), so that a setting no run can train
  with is refused before any run starts or sweep.json is written."""
  merged = [{**settings, **(overrides or {})} for settings in sweep_settings(sweep)]
  runs = [SweepRun(run_workdir(settings), settings) for settings in merged]
  workdirs = [run.workdir for run in runs]
  assert len(set(workdirs)) == len(workdirs), f'sweep {sweep} names two runs alike'
  for run in runs:
    try:
      TrainConfig(**run.settings).resolved()
    except UsageError as error:
      raise UsageError(f'{error} (run {run.workdir} of {sweep}; nothing was started): fix the '
                       '--set values') from None
  return runs


def select(runs: list[SweepRun], items) -> list[SweepRun]:
  """The runs matching every `--only` key; a key given several times matches any of its values."""
  wanted = {}
  for key, value in parse_assignments(items, 'only'):
    wanted.setdefault(key, set()).add(value)
  keys = set().union(*(run.settings for run in runs))
  for key in wanted:
    if key not in keys:
      raise UsageError(f'--only={key}=...: the runs of this sweep have no setting {key}; '
                       f'choose from {", ".join(sorted(keys))}')
  chosen = [run for run in runs
            if all(format_value(run.settings.get(key)) in values for key, values in wanted.items())]
  if not chosen:
    raise UsageError(f'--only={",".join(items)} matches none of the {len(runs)} runs')
  return chosen


def _varying_keys(settings_list: list[dict]) -> set[str]:
  keys = set().union(*settings_list)
  return {key for key in keys if len({format_value(s.get(key)) for s in settings_list}) > 1}
