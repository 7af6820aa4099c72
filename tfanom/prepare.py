r"""Prepares a dataset once, without training: TFDS datasets, folders and ImageNet subsets are
written into their prepared files (docs/protocol.md, "Prepared data and memory").

  python -m tfanom.prepare --dataset=cifar10 --data_dir=$TFDS
  python -m tfanom.prepare --dataset=folder --data_dir=ROOT --image_size=64
  python -m tfanom.prepare --dataset=imagenet_dog --data_dir=$ILSVRC --cache_dir=/shared/cache

It takes the flags of tfanom.train and prepares what that training command would read.
"""

import sys

from tfanom.cli.startup import import_tensorflow_quietly

import_tensorflow_quietly()

from tfanom.cli.flags import config_command, run_command  # noqa: E402
from tfanom.config import TrainConfig  # noqa: E402
from tfanom.data.sources import prepare_data  # noqa: E402

command = config_command('tfanom.prepare', TrainConfig, prepare_data)


def run_main():
  """The `tfanom-prepare` console script."""
  run_command(command(), sys.modules[__name__])


if __name__ == '__main__':
  run_main()
