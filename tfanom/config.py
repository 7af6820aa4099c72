"""Typed training configuration: every setting of a run, declared once, with what it may be.

Each `TrainConfig` field carries its help text, whether a resumed run may change it, and its
allowed values (choices, bounds, a rule) as field metadata; `check_settings` refuses any other
value when a config is made, for every dataclass declared with `setting` fields.
`tfanom.cli.flags` turns the fields into the flags of `tfanom.train`, the sweeps check their
`--set` overrides with `parse_setting`, and `config.json` is `TrainConfig.to_dict()`: a field
added here appears in all three without being written anywhere else.

A field left unset (None) takes its dataset's default (`tfanom.defaults`) in `resolved()`.
"""

import dataclasses
import functools
import math
import types
import typing

from tfanom.data.holdout import holds_nothing_out
from tfanom.defaults import DATASET_DEFAULTS, GLOBAL_DEFAULTS, PRESETS, cpc_defaults
from tfanom.errors import UsageError

# Wide ResNet settings, which --network=fast does not read.
WIDE_RESNET_SETTINGS = ('depth', 'width', 'dropout', 'extra_groups', 'stem', 'padding')


def setting(default, doc: str, resumable: bool = False, aliases=(), required=False, *,
            choices=None, minimum=None, maximum=None, above=None, below=None, rule=None):
  """A config field: its default, its flag's help text `doc`, and (TrainConfig) whether a resumed
  run may change it (`resumable`: it does not change what the run computes, e.g. where the data
  lives). `required`: the command line must give it (its default is None).

  What a value may be, which `check_settings` enforces besides the field's type (integers for
  `int`, finite numbers for `float`): `choices`; the bounds `minimum`/`maximum` (inclusive) and
  `above`/`below` (exclusive), which apply to each item of a list; and `rule`, a pair (predicate
  of the whole value, the end of the sentence `--name=value ...` refusing it).
  """
  limits = dict(choices=None if choices is None else tuple(choices), minimum=minimum,
                maximum=maximum, above=above, below=below, rule=rule)
  return dataclasses.field(default=default,
                           metadata=dict(help=doc, resumable=resumable, aliases=tuple(aliases),
                                         required=required, **limits))


def _is_wide_resnet_depth(depth: int) -> bool:
  return depth >= 10 and (depth - 4) % 6 == 0


def _increasing(values) -> bool:
  return all(a < b for a, b in zip(values, values[1:]))


def _decodes_files(dataset: str) -> bool:
  return dataset == 'folder' or dataset.startswith('imagenet_')


# Settings that only some data sources read, and which datasets read them.
SOURCE_SETTINGS = dict(
    data_dir=lambda dataset: dataset != 'digits',
    image_size=_decodes_files,
    cache_dir=lambda dataset: dataset != 'digits',
    skip_corrupt=_decodes_files)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One hold-out run. Flags of `python -m tfanom.train` are these fields, with these help texts."""
  dataset: str = setting('digits', f'One of {", ".join(DATASET_DEFAULTS)}.',
                         choices=DATASET_DEFAULTS)
  holdout: str = setting('0', 'The anomaly class: an index, a class name or (ImageNet) a WordNet '
                         'id; none trains on every class and reports accuracy only.')
  preset: str | None = setting(None, 'fast: the airbench94 network and training recipe (10 '
                               'epochs, batch 1024); its settings are defaults that flags still '
                               'override. See docs/training.md.', choices=PRESETS)
  network: str | None = setting(None, 'wide_resnet (the paper) or fast (airbench94\'s 8-layer '
                                'network with a patch-whitening first layer; --preset=fast).',
                                choices=('wide_resnet', 'fast'))
  data_dir: str | None = setting(None, 'TFDS data dir, the root of an image folder, or '
                                 'ILSVRC2012 (train/<wnid>/, val/<wnid>/).', resumable=True)
  image_size: int | None = setting(None, 'Side of the decoded square images of folder (32) and '
                                   'ImageNet (256) datasets.', minimum=1)
  crop_size: int | None = setting(None, 'Side of the crops the network sees (random in training, '
                                  'central in evaluation); ImageNet default 224; unset elsewhere: '
                                  'pad-and-crop at full size.', minimum=1)
  members: tuple[str, ...] = setting((), 'WordNet ids of the classes of --dataset=imagenet_subset.')
  cache_dir: str | None = setting(None, 'Where TFDS, folder and ImageNet images are prepared '
                                  'once for every run; default <data_dir>/tfanom_cache.',
                                  resumable=True)
  skip_corrupt: bool = setting(False, 'Skip unreadable image files (folder, ImageNet) and report '
                               'how many, instead of stopping.')
  workdir: str | None = setting(None, 'Checkpoints and results.json; default '
                                'runs/<dataset>/holdout<h>/<aux>/seed<seed>.', resumable=True)
  aux: str = setting('rotation', 'Auxiliary task: rotation, cpc (contrastive predictive coding, '
                     'Appendix B), or none.', choices=('rotation', 'cpc', 'none'))
  aux_norm: str | None = setting(
      None, 'Batch norm in the auxiliary step: protected (batch statistics, moving statistics '
      'untouched; default), shared (the official code), conditional (per task; default for cpc).',
      choices=('protected', 'shared', 'conditional'))
  rotations: str = setting('rot90', 'rot90 (the paper) or official (flips and transposes, as the '
                           'official code).', choices=('rot90', 'official'))
  aux_weight: float | None = setting(None, 'lambda, the auxiliary loss weight; default per '
                                     'dataset; for cpc 10 on ImageNet (Appendix B), 1 elsewhere.',
                                     aliases=('rotation_weight',), minimum=0)
  aux_batch_size: int | None = setting(None, 'Images per auxiliary step; default batch/4 for '
                                       'rotation (each rotated four ways), batch/2 for cpc (32 '
                                       'beside ImageNet\'s 64, as in Appendix B).',
                                       minimum=1)
  cpc_patch_size: int | None = setting(None, 'Side of CPC\'s patches; default a quarter of the '
                                       'image side.', minimum=1)
  cpc_patch_stride: int | None = setting(None, 'Step between CPC\'s patches; default half the '
                                         'patch size.', minimum=1)
  cpc_steps: int = setting(3, 'Rows of patches CPC predicts ahead, one linear head each.',
                           minimum=1)
  padding: str | None = setting(None, 'Padding of every convolution: zeros, or reflect (default '
                                'for cpc).', choices=('zeros', 'reflect'))
  epochs: int | None = setting(None, 'Training epochs; default per dataset.', minimum=1)
  batch_size: int | None = setting(None, 'Global batch; default per dataset.', minimum=1)
  depth: int | None = setting(None, 'WRN depth (6n+4); default per dataset.',
                              rule=(_is_wide_resnet_depth, 'is not a Wide ResNet depth: use 6n+4 '
                                    'with n >= 1 (10, 16, 22, 28, ...)'))
  width: int | None = setting(None, 'WRN widening factor; default per dataset.', minimum=1)
  dropout: float | None = setting(None, 'Dropout between convolutions; default per dataset.',
                                  minimum=0, below=1)
  extra_groups: int | None = setting(None, 'Groups of blocks after the standard three (STL-10 and '
                                     'ImageNet: 1); default per dataset.', minimum=0)
  stem: str | None = setting(None, 'First layers: cifar (3x3 convolution), imagenet_maxpool '
                             '(official code: 7x7/2 convolution, 3x3/2 max pooling; ImageNet '
                             'default) or imagenet_avgpool (paper text: 3x3 convolution, 2x2 '
                             'average pooling).',
                             choices=('cifar', 'imagenet_maxpool', 'imagenet_avgpool'))
  augment: str | None = setting(None, 'crop_flip, crop, none, center_mask (crop_flip, then '
                                'Table 7\'s central mask) or crop_altflip (crops, and each image '
                                'mirrored in every other epoch, as airbench); default per '
                                'dataset.', choices=('crop_flip', 'crop', 'none', 'center_mask',
                                                     'crop_altflip'))
  learning_rate: float | None = setting(None, 'Peak learning rate (default 0.1; 1.30 with '
                                        '--preset=fast).', above=0)
  lr_schedule: str | None = setting(None, 'step (the paper: --lr_decay_fractions) or triangle '
                                    '(airbench: linear from 0.2x to 1x over the first 20% of '
                                    'steps, then linear to 0).', choices=('step', 'triangle'))
  lr_decay_fractions: tuple[float, ...] = setting(
      (0.3, 0.6, 0.8), 'Fractions of training at which the learning rate is multiplied by '
      '--lr_decay_factor (the paper: epochs 60, 120, 160 of 200).', above=0, below=1,
      rule=(_increasing, 'must be increasing'))
  lr_decay_factor: float = setting(0.2, 'Learning-rate factor at each of --lr_decay_fractions.',
                                   above=0, maximum=1)
  momentum: float | None = setting(None, 'Nesterov momentum of both optimizers (default 0.9).',
                                  minimum=0, below=1)
  weight_decay: float | None = setting(None, 'L2 weight decay: weight_decay * sum(w**2) / 2 added '
                                       'to the loss (default 5e-4).', minimum=0)
  weight_decay_scope: str | None = setting(None, 'all (every trainable variable, as the '
                                           'official code; default) or kernels (convolution and '
                                           'dense kernels).', choices=('kernels', 'all'))
  aux_decays_trunk: bool | None = setting(None, 'The auxiliary step adds its own weight decay on '
                                          'the trunk, so the trunk is decayed in both steps (the '
                                          'official code; default); false: only the '
                                          'classification step decays it.')
  norm_shift_lr_scale: float | None = setting(None, 'Learning-rate factor of the batch-norm shifts '
                                              '(airbench: 64); their decay keeps the base rate.',
                                              above=0)
  label_smoothing: float | None = setting(None, 'Label smoothing of the classification loss '
                                          '(default 0; 0.2 with --preset=fast).', minimum=0,
                                          below=1)
  crop_padding: int | None = setting(None, 'Pixels padded on each side before the random crops '
                                     'of crop augmentations (default 4).', minimum=0)
  crop_fill: str | None = setting(None, 'What the crop padding holds: reflect (the official '
                                  'code; airbench; default) or zeros.',
                                  choices=('zeros', 'reflect'))
  tta: str | None = setting(None, 'Test-time augmentation of every class-head score: none, flip '
                            '(mean features of the image and its mirror image) or flip_translate '
                            '(airbench: also one-pixel shifts).',
                            choices=('none', 'flip', 'flip_translate'))
  # numpy and Keras seed generators take 32-bit unsigned seeds.
  seed: int = setting(0, 'Seeds initialisation, shuffling and augmentation.', minimum=0,
                      maximum=2**32 - 1)
  validation: bool = setting(False, 'Evaluate on 20% of the training data held out (seeded) '
                             'instead of the test set, to tune lambda.')
  eval_every: int = setting(1, 'Evaluate every N epochs (and after each of the last '
                            '--final_window epochs); 0: only those.', resumable=True,
                            minimum=0)
  # The official code averages the metrics of the last 10 epochs: AP "keeps wiggling around".
  final_window: int = setting(10, 'results.json `final` averages the evaluations after each of '
                              'this many last epochs.', minimum=0)
  eval_batch_size: int = setting(500, 'Images per evaluation batch.', resumable=True,
                                minimum=1)
  odin_temperature: float = setting(1000.0, 'ODIN\'s temperature (the paper\'s; never tuned on '
                                    'anomalies).', above=0)
  odin_epsilon: float = setting(5e-5, 'ODIN\'s input step, on the scale --odin_step names.',
                                minimum=0)
  odin_step: str = setting('unit', 'What --odin_epsilon is measured in: unit ([0, 1] pixels) or '
                           'official (0-255 pixels, as the paper\'s code: a step 255 times '
                           'smaller).', choices=('unit', 'official'))
  steps_per_loop: int = setting(50, 'Training steps per traced call.', resumable=True,
                               minimum=1)
  checkpoint_every_steps: int = setting(0, 'Also checkpoint inside an epoch every N steps (0: only '
                                        'at the end of each epoch).', resumable=True,
                                        minimum=0)
  deterministic: bool = setting(False, 'Deterministic ops: the same command gives the same '
                                'results.json, also after a kill and resume.', resumable=True)
  strategy: str = setting('auto', 'auto (mirrored over two or more local GPUs or CPU devices, '
                          'else default), mirrored, onedevice, default, multiworker '
                          '(MultiWorkerMirroredStrategy from TF_CONFIG) or tpu.', resumable=True,
                          choices=('auto', 'mirrored', 'onedevice', 'default', 'multiworker',
                                   'tpu'))
  mixed_precision: str = setting('float32', 'float32, bfloat16 or float16 (with loss scaling): '
                                 '16-bit convolutions on accelerators; variables, batch norm, '
                                 'logits and scores stay float32.',
                                 choices=('float32', 'bfloat16', 'float16'))
  xla: bool = setting(False, 'XLA-compile the training step and the scoring functions.',
                      resumable=True)

  def ignored_settings(self) -> list[str]:
    """The settings given away from their defaults that this config's dataset or network does
    not read."""
    defaults = {field.name: field.default for field in dataclasses.fields(self)}
    ignored = [name for name, reads in SOURCE_SETTINGS.items()
               if getattr(self, name) != defaults[name] and not reads(self.dataset)]
    network = self.network or PRESETS.get(self.preset, {}).get('network')
    if network == 'fast':
      ignored += [name for name in WIDE_RESNET_SETTINGS if getattr(self, name) is not None]
    return ignored

  def __post_init__(self):
    check_settings(self)

  def resolved(self) -> 'TrainConfig':
    """This config with every unset field filled from its dataset's defaults, then checked."""
    defaults = {**GLOBAL_DEFAULTS, **DATASET_DEFAULTS[self.dataset],
                **PRESETS.get(self.preset, {})}
    if self.aux == 'cpc':
      defaults.update(cpc_defaults(self.dataset))
    filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
    config = dataclasses.replace(self, **filled)
    if config.network == 'fast':
      # Recorded as unset in config.json: the network has no such settings.
      config = dataclasses.replace(config, **dict.fromkeys(WIDE_RESNET_SETTINGS))
    config.check()
    return config

  @property
  def holds_out(self) -> bool:
    """False for --holdout=none: every class is known and only accuracy is measured."""
    return not holds_nothing_out(self.holdout)

  def check(self):
    """Refuses a resolved config whose settings do not fit together (each one alone is checked
    when the config is made)."""
    check_settings(self)
    if self.network == 'fast' and self.aux == 'cpc':
      raise UsageError('--aux=cpc needs --network=wide_resnet: CPC encodes patches with the '
                       'Wide ResNet\'s first three groups, and the fast network pools a patch '
                       'down to nothing; use --aux=rotation or --aux=none with --preset=fast')
    if self.crop_size and self.image_size and self.crop_size > self.image_size:
      raise UsageError(f'--crop_size={self.crop_size} is larger than --image_size='
                       f'{self.image_size}: crops are taken from the decoded images')
    if bool(self.members) != (self.dataset == 'imagenet_subset'):
      raise UsageError('--dataset=imagenet_subset needs --members=WNID,WNID,... and --members '
                       'applies to it alone')
    if self.aux == 'rotation' and self.aux_batch_size is None and self.batch_size % 4:
      raise UsageError(f'--batch_size={self.batch_size} must be a multiple of 4 with --aux='
                       f'{self.aux}: the auxiliary step rotates batch/4 images four ways')
    if self.aux == 'cpc' and self.aux_batch_size is None and self.batch_size < 2:
      raise UsageError(f'--batch_size={self.batch_size} leaves no images for the CPC step '
                       '(batch/2): use a larger --batch_size or set --aux_batch_size')
    if self.deterministic and self.xla and (self.network == 'fast'
                                            or self.stem == 'imagenet_maxpool'):
      # TensorFlow 2.21 stops the first step with UnimplementedError: XLA has no deterministic
      # max-pooling gradient.
      raise UsageError(f'--deterministic with --xla cannot train --network={self.network}'
                       + (f' --stem={self.stem}' if self.network == 'wide_resnet' else '')
                       + ': XLA has no deterministic max-pooling gradient; drop one of the two')

  @property
  def resolved_aux_batch_size(self) -> int:
    """Images per auxiliary step (0 without an auxiliary task)."""
    if self.aux == 'none':
      return 0
    if self.aux_batch_size is not None:
      return self.aux_batch_size
    return self.batch_size // (4 if self.aux == 'rotation' else 2)

  def to_dict(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Kind:
  """The declared type of a setting: str, int, float or bool (`of`); a tuple of them (`is_list`);
  None allowed (`optional`)."""
  of: type
  is_list: bool
  optional: bool


@functools.cache
def setting_types(config_class) -> dict[str, Kind]:
  """Each field's Kind, for any dataclass declared with `setting` fields."""
  kinds = {}
  for name, hint in typing.get_type_hints(config_class).items():
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
      args = [a for a in typing.get_args(hint) if a is not type(None)]
      optional, hint = True, args[0]
    if typing.get_origin(hint) is tuple:
      kinds[name] = Kind(typing.get_args(hint)[0], True, optional)
    else:
      kinds[name] = Kind(hint, False, optional)
  return kinds


def setting_kinds(config_class=None) -> dict[str, tuple[type, bool]]:
  """Each field's (element type, is a list): str, int, float or bool; lists are tuples of it.

  Of TrainConfig by default, or of any dataclass declared with `setting` fields.
  """
  return {name: (kind.of, kind.is_list)
          for name, kind in setting_types(config_class or TrainConfig).items()}


# What a value of each type is called: alone, and in a list.
_TYPE_NAMES = {bool: ('true or false', 'true/false values'), int: ('an integer', 'integers'),
               float: ('a finite number', 'finite numbers'), str: ('a string', 'strings')}


def _expected(kind: Kind) -> str:
  return f'a list of {_TYPE_NAMES[kind.of][1]}' if kind.is_list else _TYPE_NAMES[kind.of][0]


def _of_type(kind: type, value) -> bool:
  if kind is bool or isinstance(value, bool):
    return kind is bool and isinstance(value, bool)
  if kind is int:
    return isinstance(value, int)
  if kind is float:
    return isinstance(value, (int, float)) and math.isfinite(value)
  return isinstance(value, kind)


def format_value(value) -> str:
  """A setting as written on a command line."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, (list, tuple)):
    return ','.join(format_value(item) for item in value)
  return str(value)


def _number(bound) -> str:
  return f'{bound:g}' if isinstance(bound, float) else str(bound)


def _range_problem(kind: type, limits: dict, value) -> str | None:
  """What `value` breaks of the bounds in `limits` ('must be ...'), or None."""
  low, high = limits['minimum'], limits['maximum']
  above, below = limits['above'], limits['below']
  if ((low is None or value >= low) and (high is None or value <= high)
      and (above is None or value > above) and (below is None or value < below)):
    return None
  if kind is int and low is not None and high is not None:
    return f'must be in {low}..{high}'
  if kind is int and low == 1 and high is None:
    return 'must be a positive integer'
  if above is not None and below is not None:
    return f'must lie strictly between {_number(above)} and {_number(below)}'
  if (low is None) != (above is None) and (high is None) != (below is None):
    return (f'must be in {"[" if above is None else "("}{_number(low if above is None else above)}'
            f', {_number(high if below is None else below)}{"]" if below is None else ")"}')
  if above == 0:
    return 'must be positive'
  for bound, relation in ((low, '>='), (above, '>'), (high, '<='), (below, '<')):
    if bound is not None:
      return f'must be {relation} {_number(bound)}'


def check_setting(field: dataclasses.Field, kind: Kind, value, written: str | None = None) -> None:
  """Refuses, in one line naming the flag, the value (as `written`, if it was) and what is
  allowed, a value of `field` that is not of its declared type, choices, bounds or rule."""
  name, limits = field.name, field.metadata
  shown = format_value(value) if written is None else written
  if value is None:
    if kind.optional:
      return
    raise UsageError(f'--{name} must be given')
  if kind.is_list != isinstance(value, (list, tuple)):
    raise UsageError(f'--{name}={value!r} must be {_expected(kind)}')
  for item in value if kind.is_list else [value]:
    if not _of_type(kind.of, item):
      raise UsageError(f'--{name}={shown if isinstance(item, float) else repr(value)} must be '
                       f'{_expected(kind)}')
    choices = limits.get('choices')
    if choices is not None and item not in choices:
      raise UsageError(f'--{name}={shown}' + (f': {item}' if kind.is_list else '') +
                       f' is unknown: choose one of {", ".join(choices)}')
    problem = kind.of in (int, float) and _range_problem(kind.of, limits, item)
    if problem:
      each = problem.replace('must', 'must each', 1) if kind.is_list else problem
      raise UsageError(f'--{name}={shown} {each}')
  rule = limits.get('rule')
  if rule is not None and not rule[0](value):
    raise UsageError(f'--{name}={shown} {rule[1]}')


def check_settings(config) -> None:
  """Refuses the first field of `config` (a dataclass of `setting` fields) whose value is not of
  its declared type, choices, bounds or rule: the one check behind every command's flags."""
  kinds = setting_types(type(config))
  for field in dataclasses.fields(config):
    check_setting(field, kinds[field.name], getattr(config, field.name))


def check_train_setting(name: str, value) -> None:
  """Refuses, in the command line's words, a value of TrainConfig's setting `name` that it does
  not allow: the check of library code called with a setting directly, not through a config."""
  field = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
  check_setting(field, setting_types(TrainConfig)[name], value)


def parse_setting(name: str, text: str, config_class=None):
  """The typed value of field `name` of `config_class` (default TrainConfig) written as `text`
  (as on a command line), checked as `check_settings` checks it."""
  config_class = config_class or TrainConfig
  kinds = setting_types(config_class)
  if name not in kinds:
    raise UsageError(f'{name} is not a setting of tfanom.train (see `python -m tfanom.train '
                     '--help`)')
  kind = kinds[name]
  if kind.is_list:
    value = tuple(_parse_scalar(name, kind.of, part.strip(), text) for part in text.split(',')
                  if part.strip())
  else:
    value = _parse_scalar(name, kind.of, text, text)
  field = next(f for f in dataclasses.fields(config_class) if f.name == name)
  check_setting(field, kind, value, written=text)
  return value


def _parse_scalar(name, kind, text, whole):
  if kind is str:
    return text
  if kind is bool:
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
  else:
    try:
      value = kind(text)
      if kind is int or math.isfinite(value):
        return value
    except ValueError:
      pass
  raise UsageError(f'--{name}={whole} must be {_TYPE_NAMES[kind][0]}')


def resumable_settings() -> frozenset[str]:
  """Fields that do not change what a run computes, so a resumed run may differ in them."""
  return frozenset(field.name for field in dataclasses.fields(TrainConfig)
                   if field.metadata['resumable'])


RESUMABLE_DIFFERENCES = resumable_settings()

# Settings renamed since runs were first saved: old config.json files still read.
RENAMED = {alias: field.name for field in dataclasses.fields(TrainConfig)
           for alias in field.metadata['aliases']}


# Settings whose default changed after runs were saved without them: the behaviour of the code
# those runs were trained with (every run saved before the three switches existed).
PREDATING_DEFAULTS = dict(crop_fill='zeros', weight_decay_scope='kernels', aux_decays_trunk=False)


def upgrade_saved(saved: dict) -> dict:
  """A saved config dict with renamed settings under their current names, and the settings it
  predates whose default has changed since at the values it was trained with."""
  return {**PREDATING_DEFAULTS, **{RENAMED.get(key, key): value for key, value in saved.items()}}
