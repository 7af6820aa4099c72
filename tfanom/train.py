r"""Trains one hold-out-class anomaly detector and reports its average precision.

  python -m tfanom.train                                  # digits, a few minutes on a CPU
  python -m tfanom.train --dataset=cifar10 --holdout=cat --data_dir=~/tensorflow_datasets
  python -m tfanom.train --dataset=imagenet_spider --holdout=tarantula --data_dir=~/ILSVRC2012 \
      --trials=3

Flags left unset take the paper's defaults for the dataset (see tfanom/config.py). Running the same
command again resumes from the last checkpoint in --workdir.
"""

import os
import signal
import sys
import threading

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app, flags, logging  # noqa: E402

from tfanom import config as config_lib  # noqa: E402

_DATASET = flags.DEFINE_string('dataset', 'digits',
                               f'One of {", ".join(config_lib.DATASET_DEFAULTS)}.')
_HOLDOUT = flags.DEFINE_string('holdout', '0', 'The anomaly class: an index, a class name or '
                               '(ImageNet) a WordNet id.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir, the root of an image folder, '
                                'or ILSVRC2012 (train/<wnid>/, val/<wnid>/).')
_MEMBERS = flags.DEFINE_list('members', None, 'WordNet ids of the classes of '
                             '--dataset=imagenet_subset.')
_CACHE_DIR = flags.DEFINE_string('cache_dir', None, 'Where decoded ImageNet images are cached; '
                                 'default <data_dir>/tfanom_cache.')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', None, 'Side of the decoded images of folder (32) '
                                   'and ImageNet (256) datasets.')
_CROP_SIZE = flags.DEFINE_integer('crop_size', None, 'Side of the crops the network sees (random '
                                  'in training, central in evaluation); ImageNet default 224.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints and results.json; default '
                               'runs/<dataset>/holdout<h>_<aux>_seed<seed>.')
_AUX = flags.DEFINE_string('aux', 'rotation', 'Auxiliary task: rotation, cpc (contrastive '
                           'predictive coding, Appendix B), or none.')
_AUX_NORM = flags.DEFINE_string(
    'aux_norm', None, 'Batch norm in the auxiliary step: protected (batch statistics, '
    'moving statistics untouched; default), shared (the official code), conditional (per task; '
    'default for cpc).')
_ROTATIONS = flags.DEFINE_string('rotations', 'rot90', 'rot90 (the paper) or official (flips and '
                                 'transposes, as the official code).')
_AUX_WEIGHT = flags.DEFINE_float('aux_weight', None, 'lambda, the auxiliary loss weight; '
                                 'default per dataset, 10 for cpc.')
flags.DEFINE_alias('rotation_weight', 'aux_weight')
_AUX_BATCH_SIZE = flags.DEFINE_integer('aux_batch_size', None, 'Images per auxiliary step; '
                                       'default batch/4 for rotation, batch/2 for cpc.')
_CPC_PATCH_SIZE = flags.DEFINE_integer('cpc_patch_size', None, 'Side of CPC\'s patches; default '
                                       'a quarter of the image side.')
_CPC_PATCH_STRIDE = flags.DEFINE_integer('cpc_patch_stride', None, 'Step between CPC\'s patches; '
                                         'default half the patch size.')
_CPC_STEPS = flags.DEFINE_integer('cpc_steps', 3, 'Rows of patches CPC predicts ahead.')
_PADDING = flags.DEFINE_string('padding', None, 'Padding of every convolution: zeros, or reflect '
                               '(default for cpc).')
_EPOCHS = flags.DEFINE_integer('epochs', None, 'Training epochs; default per dataset.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', None, 'Global batch; default per dataset.')
_DEPTH = flags.DEFINE_integer('depth', None, 'WRN depth (6n+4); default per dataset.')
_WIDTH = flags.DEFINE_integer('width', None, 'WRN widening factor; default per dataset.')
_DROPOUT = flags.DEFINE_float('dropout', None, 'Dropout between convolutions; default per dataset.')
_STEM = flags.DEFINE_string('stem', None, 'First layers: cifar (3x3 convolution), imagenet_maxpool '
                            '(official code: 7x7/2 convolution, 3x3/2 max pooling; ImageNet '
                            'default) or imagenet_avgpool (paper text: 3x3 convolution, 2x2 average '
                            'pooling).')
_AUGMENT = flags.DEFINE_string('augment', None, 'crop_flip, crop, none, or center_mask (crop_flip, '
                               'then Table 7\'s central mask); default per dataset.')
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 0.1, 'Initial learning rate.')
_WEIGHT_DECAY = flags.DEFINE_float('weight_decay', 5e-4, 'L2 weight decay on kernels.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seeds initialisation, shuffling and augmentation.')
_TRIALS = flags.DEFINE_integer('trials', None, 'Run N trials with seeds --seed..--seed+N-1 in '
                               'WORKDIR/seed<k> and write WORKDIR/aggregate.json (mean ± std).')
_VALIDATION = flags.DEFINE_bool('validation', False, 'Evaluate on 20% of the training data held '
                                'out (seeded) instead of the test set, to tune lambda.')
_EVAL_EVERY = flags.DEFINE_integer('eval_every', 1, 'Evaluate every N epochs (and after each of '
                                   'the last --final_window epochs); 0: only those.')
_FINAL_WINDOW = flags.DEFINE_integer('final_window', 10, 'results.json `final` averages the '
                                     'evaluations after each of this many last epochs.')
_STEPS_PER_LOOP = flags.DEFINE_integer('steps_per_loop', 50, 'Training steps per traced call.')
_SKIP_CORRUPT = flags.DEFINE_bool('skip_corrupt', False, 'Skip unreadable image files (folder, '
                                   'ImageNet) and report how many, instead of stopping.')
_CHECKPOINT_EVERY_STEPS = flags.DEFINE_integer(
    'checkpoint_every_steps', 0, 'Also checkpoint inside an epoch every N steps (0: only at the '
    'end of each epoch).')
_DETERMINISTIC = flags.DEFINE_bool('deterministic', False, 'Deterministic ops: the same command '
                                   'gives the same results.json, also after a kill and resume.')
_STRATEGY = flags.DEFINE_string('strategy', 'mirrored', 'mirrored, onedevice, default, multiworker '
                                '(MultiWorkerMirroredStrategy from TF_CONFIG) or tpu.')
_MIXED_PRECISION = flags.DEFINE_string(
    'mixed_precision', 'float32', 'float32, bfloat16 or float16 (with loss scaling): 16-bit '
    'convolutions on accelerators; variables, batch norm, logits and scores stay float32.')
_XLA = flags.DEFINE_bool('xla', False, 'XLA-compile the training step and the scoring function.')


def config_from_flags() -> config_lib.TrainConfig:
  return config_lib.TrainConfig(
      dataset=_DATASET.value, holdout=_HOLDOUT.value, data_dir=_DATA_DIR.value,
      image_size=_IMAGE_SIZE.value, crop_size=_CROP_SIZE.value,
      members=tuple(_MEMBERS.value or ()), cache_dir=_CACHE_DIR.value,
      skip_corrupt=_SKIP_CORRUPT.value, workdir=_WORKDIR.value,
      aux=_AUX.value,
      aux_norm=_AUX_NORM.value, rotations=_ROTATIONS.value, aux_weight=_AUX_WEIGHT.value,
      aux_batch_size=_AUX_BATCH_SIZE.value, cpc_patch_size=_CPC_PATCH_SIZE.value,
      cpc_patch_stride=_CPC_PATCH_STRIDE.value, cpc_steps=_CPC_STEPS.value, padding=_PADDING.value,
      epochs=_EPOCHS.value, batch_size=_BATCH_SIZE.value,
      depth=_DEPTH.value, width=_WIDTH.value, dropout=_DROPOUT.value, stem=_STEM.value,
      augment=_AUGMENT.value,
      learning_rate=_LEARNING_RATE.value, weight_decay=_WEIGHT_DECAY.value, seed=_SEED.value,
      validation=_VALIDATION.value, eval_every=_EVAL_EVERY.value,
      final_window=_FINAL_WINDOW.value, steps_per_loop=_STEPS_PER_LOOP.value,
      checkpoint_every_steps=_CHECKPOINT_EVERY_STEPS.value, deterministic=_DETERMINISTIC.value,
      strategy=_STRATEGY.value, mixed_precision=_MIXED_PRECISION.value, xla=_XLA.value)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # TensorFlow's own INFO lines (one per checkpoint save) would drown the progress lines.
  logging.set_verbosity(logging.WARNING)
  from tfanom import training  # pylint: disable=g-import-not-at-top
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  from tfanom.trials import run_trials  # pylint: disable=g-import-not-at-top
  # Schedulers send SIGTERM before they kill: finish the current traced call, save, and stop.
  terminate = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: terminate.set())
  log = lambda line: print(line, flush=True)  # noqa: E731
  with reported_as_one_line('tfanom.train'):
    try:
      if _TRIALS.value is None:
        training.train_and_evaluate(config_from_flags(), log=log, stop_requested=terminate.is_set)
      else:
        run_trials(config_from_flags(), _TRIALS.value, log=log, stop_requested=terminate.is_set)
    except training.Preempted as stop:
      print(f'tfanom.train: SIGTERM: {stop}', file=sys.stderr)
      sys.exit(128 + signal.SIGTERM)
    except training.TrainingDiverged as error:
      # A run that failed, not a command line to fix: exit status 1.
      print(f'tfanom.train: error: {error}', file=sys.stderr)
      sys.exit(1)


if __name__ == '__main__':
  app.run(main)
