r"""Scores a dataset's test split with one of Appendix C's trivial baselines (no network).

  python -m tfanom.baselines --dataset=cifar10 --data_dir=~/tensorflow_datasets \
      --method=gaussian_mixture          # or --method=edge_energy; --holdout=cat for one class
"""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags  # noqa: E402

from tfanom.baselines import METHODS, BaselineConfig, run_baseline  # noqa: E402
from tfanom.errors import reported_as_one_line  # noqa: E402

_DATASET = flags.DEFINE_string('dataset', 'cifar10', 'Any dataset of tfanom.train.')
_HOLDOUT = flags.DEFINE_string('holdout', 'all', 'The anomaly class (index, name or WordNet id), '
                               'or all: each class in turn, and their mean.')
_METHOD = flags.DEFINE_string('method', 'gaussian_mixture', f'One of {", ".join(METHODS)}.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'As for tfanom.train.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', None, 'As for tfanom.train.')
_MEMBERS = flags.DEFINE_list('members', None, 'As for tfanom.train (--dataset=imagenet_subset).')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'As for tfanom.train.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where baseline.json goes; default '
                               'runs/<dataset>/holdout<h>_baseline_<method>.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  config = BaselineConfig(
      dataset=_DATASET.value, holdout=_HOLDOUT.value, method=_METHOD.value,
      data_dir=_DATA_DIR.value, image_size=_IMAGE_SIZE.value, members=tuple(_MEMBERS.value or ()),
      cache_dir=_CACHE_DIR.value, workdir=_WORKDIR.value)
  with reported_as_one_line('tfanom.baselines'):
    run_baseline(config, log=lambda line: print(line, flush=True))


if __name__ == '__main__':
  app.run(main)
