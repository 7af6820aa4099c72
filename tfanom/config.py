"""Typed training configuration and the paper's per-dataset defaults.

Entry points turn flags into a `TrainConfig`; a flag left unset (None) takes its dataset's default.
"""

import dataclasses

from tfanom.errors import UsageError

# Fields a flag may leave to the dataset; every other field has one default for all datasets.
DATASET_DEFAULTS = {
    # Small enough that the bare command finishes in a few minutes on 2 CPU cores. Digits are not
    # mirror-symmetric, so they are cropped but never flipped.
    'digits': dict(depth=10, width=2, dropout=0.0, epochs=15, batch_size=128,
                   rotation_weight=0.5, augment='crop'),
    'mnist': dict(depth=16, width=4, dropout=0.3, epochs=30, batch_size=128,
                  rotation_weight=0.5, augment='crop'),
    # Paper section 5: WRN-28-10, dropout 0.3, 200 epochs, 128 images on each of 4 GPUs.
    'cifar10': dict(depth=28, width=10, dropout=0.3, epochs=200, batch_size=512,
                    rotation_weight=0.5, augment='crop_flip'),
    # An extra group of blocks, width 4, 64 images on each of 4 GPUs, twice the CIFAR-10 length.
    'stl10': dict(depth=28, width=4, dropout=0.3, epochs=400, batch_size=256,
                  rotation_weight=1.0, augment='crop_flip', extra_groups=1),
    'folder': dict(depth=16, width=4, dropout=0.3, epochs=100, batch_size=128,
                   rotation_weight=0.5, augment='crop_flip'),
}

STRATEGIES = ('mirrored', 'default', 'onedevice')
AUX_NORMS = ('protected', 'shared', 'conditional')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  dataset: str = 'digits'
  holdout: str = '0'
  data_dir: str | None = None
  image_size: int = 32  # only for --dataset=folder
  workdir: str | None = None
  aux: str = 'rotation'
  aux_norm: str = 'protected'
  rotations: str = 'rot90'
  rotation_weight: float | None = None
  epochs: int | None = None
  batch_size: int | None = None
  depth: int | None = None
  width: int | None = None
  dropout: float | None = None
  extra_groups: int | None = None
  augment: str | None = None
  learning_rate: float = 0.1
  # The paper's epochs 60/120/160 of 200, as fractions of training, each multiplying the rate by 0.2.
  lr_decay_fractions: tuple[float, ...] = (0.3, 0.6, 0.8)
  lr_decay_factor: float = 0.2
  momentum: float = 0.9
  weight_decay: float = 5e-4
  seed: int = 0
  validation: bool = False
  eval_every: int = 1
  # The official code averages the metrics of the last 10 epochs: AP "keeps wiggling around".
  final_window: int = 10
  eval_batch_size: int = 500
  odin_temperature: float = 1000.0
  odin_epsilon: float = 5e-5
  steps_per_loop: int = 50
  strategy: str = 'mirrored'

  def resolved(self) -> 'TrainConfig':
    """This config with every unset field filled from its dataset's defaults, then checked."""
    if self.dataset not in DATASET_DEFAULTS:
      raise UsageError(f'--dataset={self.dataset} is unknown: choose one of '
                       f'{", ".join(DATASET_DEFAULTS)}')
    defaults = dict(DATASET_DEFAULTS[self.dataset])
    defaults.setdefault('extra_groups', 0)
    filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
    config = dataclasses.replace(self, **filled)
    config.check()
    return config

  def check(self):
    positive = ('epochs', 'batch_size', 'eval_batch_size', 'steps_per_loop', 'image_size')
    for name in positive:
      if getattr(self, name) <= 0:
        raise UsageError(f'--{name}={getattr(self, name)} must be a positive integer')
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
    if self.aux != 'none' and self.batch_size % 4:
      raise UsageError(f'--batch_size={self.batch_size} must be a multiple of 4 with --aux='
                       f'{self.aux}: the auxiliary step rotates batch/4 images four ways')
    if self.rotation_weight < 0:
      raise UsageError(f'--rotation_weight={self.rotation_weight} must be >= 0')
    for name in ('learning_rate', 'odin_temperature'):
      if getattr(self, name) <= 0:
        raise UsageError(f'--{name}={getattr(self, name)} must be positive')

  def to_dict(self):
    return dataclasses.asdict(self)


# Fields that do not change what a run computes, so a resumed run may differ in them.
RESUMABLE_DIFFERENCES = frozenset({'workdir', 'data_dir', 'steps_per_loop', 'strategy',
                                   'eval_batch_size', 'eval_every'})
