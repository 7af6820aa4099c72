"""Typed training configuration and the paper's per-dataset defaults.

Entry points turn flags into a `TrainConfig`; a flag left unset (None) takes its dataset's default.
"""

import dataclasses

from tfanom.data.imagenet import SUBSETS as IMAGENET_SUBSETS
from tfanom.errors import UsageError
from tfanom.precision import check_precision

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
    # the README, "Benchmarks").
    **{f'imagenet_{subset}': dict(depth=28, width=4, dropout=0.0, epochs=200, batch_size=64,
                                  aux_weight=0.5, augment='crop_flip', extra_groups=1,
                                  stem='imagenet_maxpool', image_size=256, crop_size=224)
       for subset in (*IMAGENET_SUBSETS, 'subset')},
}

STRATEGIES = ('mirrored', 'default', 'onedevice', 'multiworker', 'tpu')
AUX_NORMS = ('protected', 'shared', 'conditional')
PADDINGS = ('zeros', 'reflect')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  dataset: str = 'digits'
  holdout: str = '0'
  data_dir: str | None = None
  # Side of the decoded square images (folder and ImageNet datasets), and of the crops taken from
  # them (random in training, central in evaluation); no crop_size: pad-and-crop at full size.
  image_size: int | None = None
  crop_size: int | None = None
  members: tuple[str, ...] = ()  # WordNet ids of --dataset=imagenet_subset
  cache_dir: str | None = None  # decoded ImageNet images; default <data_dir>/tfanom_cache
  skip_corrupt: bool = False  # drop unreadable image files (folder, ImageNet) instead of failing
  workdir: str | None = None
  aux: str = 'rotation'
  # Unset: 'conditional' for cpc (Appendix B), 'protected' otherwise.
  aux_norm: str | None = None
  rotations: str = 'rot90'
  aux_weight: float | None = None  # lambda; unset: the dataset's, or 10 for cpc (Appendix B)
  # Images per auxiliary step; unset: batch/4 for rotation (each rotated four ways), batch/2 for
  # cpc (32 beside ImageNet's 64, as in Appendix B).
  aux_batch_size: int | None = None
  # CPC's grid of patches; unset: patches a quarter of the image side, overlapping by half.
  cpc_patch_size: int | None = None
  cpc_patch_stride: int | None = None
  cpc_steps: int = 3  # rows ahead predicted, one linear head each
  padding: str | None = None  # of every convolution; unset: 'reflect' for cpc, 'zeros' otherwise
  epochs: int | None = None
  batch_size: int | None = None
  depth: int | None = None
  width: int | None = None
  dropout: float | None = None
  extra_groups: int | None = None
  stem: str | None = None
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
  checkpoint_every_steps: int = 0  # 0: only at the end of each epoch
  deterministic: bool = False
  strategy: str = 'mirrored'
  mixed_precision: str = 'float32'  # or 'bfloat16', 'float16' (tfanom/precision.py)
  xla: bool = False  # XLA-compiles the training step and the scoring functions

  def resolved(self) -> 'TrainConfig':
    """This config with every unset field filled from its dataset's defaults, then checked."""
    if self.dataset not in DATASET_DEFAULTS:
      raise UsageError(f'--dataset={self.dataset} is unknown: choose one of '
                       f'{", ".join(DATASET_DEFAULTS)}')
    defaults = dict(DATASET_DEFAULTS[self.dataset])
    defaults.setdefault('extra_groups', 0)
    defaults.setdefault('stem', 'cifar')
    if self.aux == 'cpc':
      defaults.update(aux_weight=10.0, aux_norm='conditional', padding='reflect')
    defaults.setdefault('aux_norm', 'protected')
    defaults.setdefault('padding', 'zeros')
    filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
    config = dataclasses.replace(self, **filled)
    config.check()
    return config

  def check(self):
    positive = ('epochs', 'batch_size', 'eval_batch_size', 'steps_per_loop', 'image_size',
                'crop_size')
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
    if self.padding not in PADDINGS:
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


# Settings renamed since runs were first saved: old config.json files still read.
RENAMED = {'rotation_weight': 'aux_weight'}


def upgrade_saved(saved: dict) -> dict:
  """A saved config dict with renamed settings under their current names."""
  return {RENAMED.get(key, key): value for key, value in saved.items()}


# Fields that do not change what a run computes, so a resumed run may differ in them.
RESUMABLE_DIFFERENCES = frozenset({'workdir', 'data_dir', 'steps_per_loop', 'strategy',
                                   'eval_batch_size', 'eval_every', 'checkpoint_every_steps',
                                   'deterministic', 'cache_dir', 'xla'})
