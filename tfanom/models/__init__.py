"""The networks: Wide ResNets with task-aware batch normalisation (`wide_resnet`), built from a
training config here, and mixed-precision policies (`mixed_precision`)."""

from tfanom.models.wide_resnet import WideResNet, WRNConfig, build_wide_resnet


def wrn_config(config, num_classes: int) -> WRNConfig:
  """The network of a resolved TrainConfig for `num_classes` known classes."""
  return WRNConfig(depth=config.depth, width=config.width, dropout=config.dropout,
                   num_classes=num_classes, extra_groups=config.extra_groups, stem=config.stem,
                   norm_tasks=2 if config.aux_norm == 'conditional' else 1, padding=config.padding)


def build_model(config, num_classes: int, image_shape, mean, std) -> WideResNet:
  """The built network of a resolved TrainConfig, normalising inputs by `mean` and `std`."""
  return build_wide_resnet(wrn_config(config, num_classes), image_shape, mean, std)
