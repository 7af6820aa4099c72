"""Typed training configuration: every setting of a run, declared once, and the paper's defaults.

Each `TrainConfig` field carries its help text (and whether a resumed run may change it) as field
metadata. `tfanom.cli.flags` turns the fields into the flags of `tfanom.train`, the sweeps check
their `--set` overrides with `parse_setting`, and `config.json` is `TrainConfig.to_dict()`: a field
added here appears in all three without being written anywhere else.

A field left unset (None) takes its dataset's default (`DATASET_DEFAULTS`) in `resolved()`.
"""

import dataclasses
import functools
import math
import types
import typing

from tfanom.data.holdout import holds_nothing_out
from tfanom.data.subsets import SUBSETS as IMAGENET_SUBSETS
from tfanom.errors import UsageError

# Fields a flag may leave to the dataset; every other field has one default for all datasets.
DATASET_DEFAULTS = {
    # Small enough that the bare command finishes in a few minutes on 2 CPU cores. Digits are not
    # mirror-symmetric, so they are cropped but never flipped.
    'digits': dict(depth=10, width=2, dropout=0.0, epochs=15, batch_size=128,
                   aux_weight=0.5, augment='crop'),
    'mnist': dict(depth=16, width=4, dropout=0.3, epochs=30, batch_size=128,
                  aux_weight=0.5, augment='crop'),
    # Paper section 5: WRN-28-10, dropout 0.3, 200 epochs, 128 images on each of 4 GPUs.
    'cifar10': dict(depth=28, width=10, dropout=0.3, epochs=200, batch_size=512,
                    aux_weight=0.5, augment='crop_flip'),
    # An extra group of blocks, width 4, 64 images on each of 4 GPUs, twice the CIFAR-10 length.
    'stl10': dict(depth=28, width=4, dropout=0.3, epochs=400, batch_size=256,
                  aux_weight=1.0, augment='crop_flip', extra_groups=1),
    'folder': dict(depth=16, width=4, dropout=0.3, epochs=100, batch_size=128,
                   aux_weight=0.5, augment='crop_flip', image_size=32),
    # Paper section 5 and Appendix A: the STL-10 network downsampled after its first convolution,
    # no dropout, batch 64, 200 epochs, images stored at 256x256 and cropped to 224x224. The paper
    # tunes lambda to "a mix of 0.5 and 1.0" without saying which subset got which; 0.5 it is.
    # The stem is the official code's (7x7/2 convolution, 3x3/2 max pooling), which the published
    # numbers were most likely run with; --stem=imagenet_avgpool is the paper's text (see
    # docs/protocol.md, "The ImageNet subsets").
    **{f'imagenet_{subset}': dict(depth=28, width=4, dropout=0.0, epochs=200, batch_size=64,
                                  aux_weight=0.5, augment='crop_flip', extra_groups=1,
                                  stem='imagenet_maxpool', image_size=256, crop_size=224)
       for subset in (*IMAGENET_SUBSETS, 'subset')},
}

def cpc_weight(dataset: str) -> float:
  """CPC's default lambda: Appendix B's 10 on the ImageNet subsets, where the paper ran it; 1 on
  the small-image datasets. On digits (WRN-10-2, 15 epochs, class 0 held out) lambda = 10 left
  the classifier at 36.7% test accuracy, and at 2 epochs at one constant prediction (every score
  tied); lambda = 1 reached 96.1%, as without CPC (docs/cpc.md)."""
  return 10.0 if dataset.startswith('imagenet_') else 1.0


# Settings every dataset shares unless a preset or a flag says otherwise.
# The fidelity switches (crop_fill, weight_decay_scope, aux_decays_trunk) take the official code's
# choices. On real CIFAR-10 (WRN-16-2, 8 epochs, cat held out, seed 0) classification alone then
# reached 85.6% accuracy and AP 26.6 MSP / 30.1 ODIN (a hand-written reference: 85.8 / 27.3 /
# 30.0; zero-filled crops, kernels decayed, trunk decayed once: 84.9 / 24.6 / 29.0), and rotation
# 86.5 / 25.8 / 30.0 (86.2 / 24.6 / 29.7 before). With --preset=fast (cat, 5 epochs, seeds 0
# and 1) rotation's AP averaged 29.7 MSP / 30.3 ODIN with the trunk decayed in both steps and 30.4 /
# 30.3 with it decayed once, while the two seeds with decay in both steps were 8 points apart: the
# preset takes the official choice too. docs/results.md.
GLOBAL_DEFAULTS = dict(network='wide_resnet', extra_groups=0, stem='cifar', aux_norm='protected',
                       padding='zeros', learning_rate=0.1, momentum=0.9, weight_decay=5e-4,
                       weight_decay_scope='all', aux_decays_trunk=True, lr_schedule='step',
                       label_smoothing=0.0, norm_shift_lr_scale=1.0, crop_padding=4,
                       crop_fill='reflect', tta='none')

# Bundles of defaults chosen with --preset; a flag given on the command line still wins.
PRESETS = {
    # airbench94's network and recipe without its lookahead (Jordan 2024, "94% on CIFAR-10 in
    # 3.29 seconds on a single GPU"; the settings of its clean_airbench variant, 93.97% in 10
    # epochs, n=200): label smoothing 0.2, Nesterov SGD with momentum 0.85 and batch 1024, a
    # learning rate of 10 per 1024 images and decoupled weight decay of 0.015 per 1024 images,
    # written here for a loss averaged over the batch (lr = 10 / (1 + 1 / (1 - 0.85)) = 1.30;
    # decay 0.015 / 10 per unit of learning rate, on every trainable variable), batch-norm shifts
    # at 64 times the learning rate, the triangular schedule, 2-pixel reflected translations with
    # alternating flips, and flip-and-translate test-time augmentation. airbench94's own settings
    # (batch-norm momentum 0.6, a schedule ending at 0.07x) go with its lookahead averaging: without
    # it they reached 90.07% on real CIFAR-10 here (docs/results.md).
    'fast': dict(network='fast', epochs=10, batch_size=1024, learning_rate=10 / (1 + 1 / 0.15),
                 momentum=0.85, weight_decay=0.015 / 10, weight_decay_scope='all',
                 lr_schedule='triangle', label_smoothing=0.2, norm_shift_lr_scale=64.0,
                 augment='crop_altflip', crop_padding=2, crop_fill='reflect',
                 tta='flip_translate'),
}
# Wide ResNet settings, which --network=fast does not read.
WIDE_RESNET_SETTINGS = ('depth', 'width', 'dropout', 'extra_groups', 'stem', 'padding')
NETWORKS = ('wide_resnet', 'fast')
LR_SCHEDULES = ('step', 'triangle')
DECAY_SCOPES = ('kernels', 'all')
CROP_FILLS = ('zeros', 'reflect')
TTAS = ('none', 'flip', 'flip_translate')

STRATEGIES = ('mirrored', 'default', 'onedevice', 'multiworker', 'tpu')
AUX_NORMS = ('protected', 'shared', 'conditional')
PADDINGS = ('zeros', 'reflect')
PRECISIONS = ('float32', 'bfloat16', 'float16')


def check_precision(name: str) -> None:
  if name not in PRECISIONS:
    raise UsageError(f'--mixed_precision={name} is unknown: choose one of {", ".join(PRECISIONS)}')


def setting(default, doc: str, resumable: bool = False, aliases=(), required=False):
  """A config field: its default, its flag's help text `doc`, and (TrainConfig) whether a resumed
  run may change it (`resumable`: it does not change what the run computes, e.g. where the data
  lives). `required`: the command line must give it (its default is None)."""
  return dataclasses.field(default=default,
                           metadata=dict(help=doc, resumable=resumable, aliases=tuple(aliases),
                                         required=required))


def _decodes_files(dataset: str) -> bool:
  return dataset == 'folder' or dataset.startswith('imagenet_')


# Settings that only some data sources read, and which datasets read them.
SOURCE_SETTINGS = dict(
    data_dir=lambda dataset: dataset != 'digits',
    image_size=_decodes_files,
    cache_dir=_decodes_files,
    skip_corrupt=_decodes_files)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One hold-out run. Flags of `python -m tfanom.train` are these fields, with these help texts."""
  dataset: str = setting('digits', f'One of {", ".join(DATASET_DEFAULTS)}.')
  holdout: str = setting('0', 'The anomaly class: an index, a class name or (ImageNet) a WordNet '
                         'id; none trains on every class and reports accuracy only.')
  preset: str | None = setting(None, 'fast: the airbench94 network and training recipe (10 '
                               'epochs, batch 1024); its settings are defaults that flags still '
                               'override. See docs/training.md.')
  network: str | None = setting(None, 'wide_resnet (the paper) or fast (airbench94\'s 8-layer '
                                'network with a patch-whitening first layer; --preset=fast).')
  data_dir: str | None = setting(None, 'TFDS data dir, the root of an image folder, or '
                                 'ILSVRC2012 (train/<wnid>/, val/<wnid>/).', resumable=True)
  image_size: int | None = setting(None, 'Side of the decoded square images of folder (32) and '
                                   'ImageNet (256) datasets.')
  crop_size: int | None = setting(None, 'Side of the crops the network sees (random in training, '
                                  'central in evaluation); ImageNet default 224; unset elsewhere: '
                                  'pad-and-crop at full size.')
  members: tuple[str, ...] = setting((), 'WordNet ids of the classes of --dataset=imagenet_subset.')
  cache_dir: str | None = setting(None, 'Where decoded folder and ImageNet images are '
                                  'prepared once for every run; default <data_dir>/tfanom_cache.',
                                  resumable=True)
  skip_corrupt: bool = setting(False, 'Skip unreadable image files (folder, ImageNet) and report '
                               'how many, instead of stopping.')
  workdir: str | None = setting(None, 'Checkpoints and results.json; default '
                                'runs/<dataset>/holdout<h>/<aux>/seed<seed>.', resumable=True)
  aux: str = setting('rotation', 'Auxiliary task: rotation, cpc (contrastive predictive coding, '
                     'Appendix B), or none.')
  aux_norm: str | None = setting(
      None, 'Batch norm in the auxiliary step: protected (batch statistics, moving statistics '
      'untouched; default), shared (the official code), conditional (per task; default for cpc).')
  rotations: str = setting('rot90', 'rot90 (the paper) or official (flips and transposes, as the '
                           'official code).')
  aux_weight: float | None = setting(None, 'lambda, the auxiliary loss weight; default per '
                                     'dataset; for cpc 10 on ImageNet (Appendix B), 1 elsewhere.',
                                     aliases=('rotation_weight',))
  aux_batch_size: int | None = setting(None, 'Images per auxiliary step; default batch/4 for '
                                       'rotation (each rotated four ways), batch/2 for cpc (32 '
                                       'beside ImageNet\'s 64, as in Appendix B).')
  cpc_patch_size: int | None = setting(None, 'Side of CPC\'s patches; default a quarter of the '
                                       'image side.')
  cpc_patch_stride: int | None = setting(None, 'Step between CPC\'s patches; default half the '
                                         'patch size.')
  cpc_steps: int = setting(3, 'Rows of patches CPC predicts ahead, one linear head each.')
  padding: str | None = setting(None, 'Padding of every convolution: zeros, or reflect (default '
                                'for cpc).')
  epochs: int | None = setting(None, 'Training epochs; default per dataset.')
  batch_size: int | None = setting(None, 'Global batch; default per dataset.')
  depth: int | None = setting(None, 'WRN depth (6n+4); default per dataset.')
  width: int | None = setting(None, 'WRN widening factor; default per dataset.')
  dropout: float | None = setting(None, 'Dropout between convolutions; default per dataset.')
  extra_groups: int | None = setting(None, 'Groups of blocks after the standard three (STL-10 and '
                                     'ImageNet: 1); default per dataset.')
  stem: str | None = setting(None, 'First layers: cifar (3x3 convolution), imagenet_maxpool '
                             '(official code: 7x7/2 convolution, 3x3/2 max pooling; ImageNet '
                             'default) or imagenet_avgpool (paper text: 3x3 convolution, 2x2 '
                             'average pooling).')
  augment: str | None = setting(None, 'crop_flip, crop, none, center_mask (crop_flip, then '
                                'Table 7\'s central mask) or crop_altflip (crops, and each image '
                                'mirrored in every other epoch, as airbench); default per '
                                'dataset.')
  learning_rate: float | None = setting(None, 'Peak learning rate (default 0.1; 1.30 with '
                                        '--preset=fast).')
  lr_schedule: str | None = setting(None, 'step (the paper: --lr_decay_fractions) or triangle '
                                    '(airbench: linear from 0.2x to 1x over the first 20% of '
                                    'steps, then linear to 0).')
  # The paper's epochs 60/120/160 of 200, as fractions of training, each multiplying the rate by 0.2.
  lr_decay_fractions: tuple[float, ...] = setting(
      (0.3, 0.6, 0.8), 'Fractions of training at which the learning rate is multiplied by '
      '--lr_decay_factor (the paper: epochs 60, 120, 160 of 200).')
  lr_decay_factor: float = setting(0.2, 'Learning-rate factor at each of --lr_decay_fractions.')
  momentum: float | None = setting(None, 'Nesterov momentum of both optimizers (default 0.9).')
  weight_decay: float | None = setting(None, 'L2 weight decay: weight_decay * sum(w**2) / 2 added '
                                       'to the loss (default 5e-4).')
  weight_decay_scope: str | None = setting(None, 'all (every trainable variable, as the '
                                           'official code; default) or kernels (convolution and '
                                           'dense kernels).')
  aux_decays_trunk: bool | None = setting(None, 'The auxiliary step adds its own weight decay on '
                                          'the trunk, so the trunk is decayed in both steps (the '
                                          'official code; default); false: only the '
                                          'classification step decays it.')
  norm_shift_lr_scale: float | None = setting(None, 'Learning-rate factor of the batch-norm shifts '
                                              '(airbench: 64); their decay keeps the base rate.')
  label_smoothing: float | None = setting(None, 'Label smoothing of the classification loss '
                                          '(default 0; 0.2 with --preset=fast).')
  crop_padding: int | None = setting(None, 'Pixels padded on each side before the random crops '
                                     'of crop augmentations (default 4).')
  crop_fill: str | None = setting(None, 'What the crop padding holds: reflect (the official '
                                  'code; airbench; default) or zeros.')
  tta: str | None = setting(None, 'Test-time augmentation of every class-head score: none, flip '
                            '(mean features of the image and its mirror image) or flip_translate '
                            '(airbench: also one-pixel shifts).')
  seed: int = setting(0, 'Seeds initialisation, shuffling and augmentation.')
  validation: bool = setting(False, 'Evaluate on 20% of the training data held out (seeded) '
                             'instead of the test set, to tune lambda.')
  eval_every: int = setting(1, 'Evaluate every N epochs (and after each of the last '
                            '--final_window epochs); 0: only those.', resumable=True)
  # The official code averages the metrics of the last 10 epochs: AP "keeps wiggling around".
  final_window: int = setting(10, 'results.json `final` averages the evaluations after each of '
                              'this many last epochs.')
  eval_batch_size: int = setting(500, 'Images per evaluation batch.', resumable=True)
  odin_temperature: float = setting(1000.0, 'ODIN\'s temperature (the paper\'s; never tuned on '
                                    'anomalies).')
  odin_epsilon: float = setting(5e-5, 'ODIN\'s input step on [0, 1] pixels.')
  steps_per_loop: int = setting(50, 'Training steps per traced call.', resumable=True)
  checkpoint_every_steps: int = setting(0, 'Also checkpoint inside an epoch every N steps (0: only '
                                        'at the end of each epoch).', resumable=True)
  deterministic: bool = setting(False, 'Deterministic ops: the same command gives the same '
                                'results.json, also after a kill and resume.', resumable=True)
  strategy: str = setting('mirrored', 'mirrored, onedevice, default, multiworker '
                          '(MultiWorkerMirroredStrategy from TF_CONFIG) or tpu.', resumable=True)
  mixed_precision: str = setting('float32', 'float32, bfloat16 or float16 (with loss scaling): '
                                 '16-bit convolutions on accelerators; variables, batch norm, '
                                 'logits and scores stay float32.')
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

  def resolved(self) -> 'TrainConfig':
    """This config with every unset field filled from its dataset's defaults, then checked."""
    if self.dataset not in DATASET_DEFAULTS:
      raise UsageError(f'--dataset={self.dataset} is unknown: choose one of '
                       f'{", ".join(DATASET_DEFAULTS)}')
    if self.preset is not None and self.preset not in PRESETS:
      raise UsageError(f'--preset={self.preset} is unknown: choose one of {", ".join(PRESETS)}')
    defaults = {**GLOBAL_DEFAULTS, **DATASET_DEFAULTS[self.dataset],
                **PRESETS.get(self.preset, {})}
    if self.aux == 'cpc':
      defaults.update(aux_weight=cpc_weight(self.dataset), aux_norm='conditional',
                      padding='reflect')
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
    positive = ('epochs', 'batch_size', 'eval_batch_size', 'steps_per_loop', 'image_size',
                'crop_size')
    for name, choices in (('network', NETWORKS), ('lr_schedule', LR_SCHEDULES),
                          ('weight_decay_scope', DECAY_SCOPES), ('crop_fill', CROP_FILLS),
                          ('tta', TTAS)):
      if getattr(self, name) not in choices:
        raise UsageError(f'--{name}={getattr(self, name)} is unknown: choose one of '
                         f'{", ".join(choices)}')
    if self.network == 'fast' and self.aux == 'cpc':
      raise UsageError('--aux=cpc needs --network=wide_resnet: CPC encodes patches with the '
                       'Wide ResNet\'s first three groups, and the fast network pools a patch '
                       'down to nothing; use --aux=rotation or --aux=none with --preset=fast')
    if not 0.0 <= self.label_smoothing < 1.0:
      raise UsageError(f'--label_smoothing={self.label_smoothing} must be in [0, 1)')
    if self.crop_padding < 0:
      raise UsageError(f'--crop_padding={self.crop_padding} must be >= 0')
    if self.weight_decay < 0 or self.momentum < 0 or self.norm_shift_lr_scale <= 0:
      raise UsageError('--weight_decay and --momentum must be >= 0 and --norm_shift_lr_scale > 0')
    for name in positive:
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        raise UsageError(f'--{name}={getattr(self, name)} must be a positive integer')
    if self.checkpoint_every_steps < 0:
      raise UsageError(f'--checkpoint_every_steps={self.checkpoint_every_steps} must be >= 0 '
                       '(0: checkpoint at the end of each epoch only)')
    if self.final_window < 0:
      raise UsageError(f'--final_window={self.final_window} must be >= 0')
    if self.crop_size and self.image_size and self.crop_size > self.image_size:
      raise UsageError(f'--crop_size={self.crop_size} is larger than --image_size='
                       f'{self.image_size}: crops are taken from the decoded images')
    if bool(self.members) != (self.dataset == 'imagenet_subset'):
      raise UsageError('--dataset=imagenet_subset needs --members=WNID,WNID,... and --members '
                       'applies to it alone')
    # numpy and Keras seed generators take 32-bit unsigned seeds.
    if not 0 <= self.seed < 2**32:
      raise UsageError(f'--seed={self.seed} must be in 0..{2**32 - 1}')
    if self.eval_every < 0:
      raise UsageError(f'--eval_every={self.eval_every} must be >= 0 (0: only the final window)')
    if self.aux_norm not in AUX_NORMS:
      raise UsageError(f'--aux_norm={self.aux_norm} is unknown: choose one of '
                       f'{", ".join(AUX_NORMS)}')
    if self.strategy not in STRATEGIES:
      raise UsageError(f'--strategy={self.strategy} is unknown: choose one of '
                       f'{", ".join(STRATEGIES)}')
    check_precision(self.mixed_precision)
    if self.aux == 'rotation' and self.aux_batch_size is None and self.batch_size % 4:
      raise UsageError(f'--batch_size={self.batch_size} must be a multiple of 4 with --aux='
                       f'{self.aux}: the auxiliary step rotates batch/4 images four ways')
    if self.aux == 'cpc' and self.aux_batch_size is None and self.batch_size < 2:
      raise UsageError(f'--batch_size={self.batch_size} leaves no images for the CPC step '
                       '(batch/2): use a larger --batch_size or set --aux_batch_size')
    if self.aux_weight < 0:
      raise UsageError(f'--aux_weight={self.aux_weight} must be >= 0')
    if self.deterministic and self.xla and (self.network == 'fast'
                                            or self.stem == 'imagenet_maxpool'):
      # TensorFlow 2.21 stops the first step with UnimplementedError: XLA has no deterministic
      # max-pooling gradient.
      raise UsageError(f'--deterministic with --xla cannot train --network={self.network}'
                       + (f' --stem={self.stem}' if self.network == 'wide_resnet' else '')
                       + ': XLA has no deterministic max-pooling gradient; drop one of the two')
    if self.network == 'wide_resnet' and self.padding not in PADDINGS:
      raise UsageError(f'--padding={self.padding} is unknown: choose zeros or reflect')
    for name in ('aux_batch_size', 'cpc_patch_size', 'cpc_patch_stride', 'cpc_steps'):
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        raise UsageError(f'--{name}={getattr(self, name)} must be a positive integer')
    for name in ('learning_rate', 'odin_temperature'):
      if getattr(self, name) <= 0:
        raise UsageError(f'--{name}={getattr(self, name)} must be positive')

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


@functools.cache
def setting_kinds(config_class=None) -> dict[str, tuple[type, bool]]:
  """Each field's (element type, is a list): str, int, float or bool; lists are tuples of it.

  Of TrainConfig by default, or of any dataclass declared with `setting` fields.
  """
  kinds = {}
  for name, hint in typing.get_type_hints(config_class or TrainConfig).items():
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
      hint = args[0]
      args = list(typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
      kinds[name] = (args[0], True)
    else:
      kinds[name] = (hint, False)
  return kinds


def parse_setting(name: str, text: str):
  """The typed value of TrainConfig field `name` written as `text` (as on a command line)."""
  kinds = setting_kinds()
  if name not in kinds:
    raise UsageError(f'{name} is not a setting of tfanom.train (see `python -m tfanom.train '
                     '--help`)')
  kind, is_list = kinds[name]
  if is_list:
    return tuple(_parse_scalar(name, kind, part.strip()) for part in text.split(',')
                 if part.strip())
  return _parse_scalar(name, kind, text)


def _parse_scalar(name, kind, text):
  if kind is str:
    return text
  if kind is bool:
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
    raise UsageError(f'{name}={text}: expected true or false')
  try:
    value = kind(text)
  except ValueError:
    raise UsageError(f'{name}={text}: expected {"an integer" if kind is int else "a number"}'
                     ) from None
  if kind is float and not math.isfinite(value):
    raise UsageError(f'{name}={text} must be a finite number')
  return value


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
