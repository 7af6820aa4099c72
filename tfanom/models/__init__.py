"""The networks: Wide ResNets (`wide_resnet`, the paper's) and airbench94's fast network (`fast`),
both trunks with task-aware batch normalisation (`trunk`), built from a training config here, and
mixed-precision policies (`mixed_precision`)."""

from tfanom.models.fast import FastNetConfig, build_fast_net, whitening_sample
from tfanom.models.trunk import Trunk
from tfanom.models.wide_resnet import WRNConfig, build_wide_resnet


def wrn_config(config, num_classes: int) -> WRNConfig:
  """The Wide ResNet of a resolved TrainConfig for `num_classes` known classes."""
  return WRNConfig(depth=config.depth, width=config.width, dropout=config.dropout,
                   num_classes=num_classes, extra_groups=config.extra_groups, stem=config.stem,
                   norm_tasks=_norm_tasks(config), padding=config.padding)


def _norm_tasks(config) -> int:
  return 2 if config.aux_norm == 'conditional' else 1


def build_model(config, num_classes: int, image_shape, mean, std, train_images=None) -> Trunk:
  """The built network of a resolved TrainConfig, normalising inputs by `mean` and `std`.

  `train_images` (uint8, a new run's training images): a seeded sample of them fits the fast
  network's whitening layer; a restored model takes it from its checkpoint.
  """
  if config.network == 'fast':
    sample = None if train_images is None else whitening_sample(train_images, config.seed)
    return build_fast_net(FastNetConfig(num_classes=num_classes, norm_tasks=_norm_tasks(config)),
                          image_shape, mean, std, sample)
  return build_wide_resnet(wrn_config(config, num_classes), image_shape, mean, std)


def network_name(config) -> str:
  """How logs name the network of a resolved TrainConfig."""
  if config.network == 'fast':
    return 'fast network (airbench94)'
  return f'WRN-{config.depth}-{config.width}'
