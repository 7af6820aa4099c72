"""Rebuilds a trained model from its workdir: config.json, the hold-out split and the checkpoint.

The model is built outside any distribution strategy and restored without the optimizers, which
is what evaluation and export need.
"""

import dataclasses
import os

import tensorflow as tf

from tfanom.auxiliary import make_auxiliary_task
from tfanom.config import TrainConfig, setting
from tfanom.data.holdout import HoldoutSplit, make_holdout
from tfanom.data.sources import configured_source
from tfanom.errors import UsageError, first_line
from tfanom.models import Trunk, build_model
from tfanom.models.trunk import checkpoint_variables
from tfanom.workdir import CHECKPOINT_DIR, CONFIG_FILE, read_config


# Settings of evaluation and export that replace a restored run's own; unset: the run's.
def data_dir_override():
  return setting(None, "Replaces the run's --data_dir, for data moved since training (the class "
                 'names and image size come from the data).')


def odin_temperature_override():
  return setting(None, "ODIN's temperature; default the run's (1000). Never tuned on anomalies.")


def odin_epsilon_override():
  return setting(None, "ODIN's input step on [0, 1] pixels; default the run's (5e-5).")


@dataclasses.dataclass
class Run:
  config: TrainConfig
  split: HoldoutSplit
  model: Trunk
  aux_task: object  # the auxiliary task (its head restored), or None
  checkpoint: str  # the restored checkpoint's path prefix


def latest_checkpoint(workdir: str) -> str:
  checkpoint = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
  if checkpoint is None:
    raise UsageError(f'--workdir={workdir} has no checkpoint in {CHECKPOINT_DIR}/: train it '
                     'first (python -m tfanom.train --workdir=...) or pass another --workdir')
  return checkpoint


def load_split(config: TrainConfig) -> HoldoutSplit:
  """The run's hold-out split, rebuilt from its data source exactly as training built it."""
  return make_holdout(configured_source(config), config.holdout, config.validation, config.seed)


def load_run(workdir: str, data_dir: str | None = None) -> Run:
  """The model of the latest checkpoint in `workdir`, with its config, split and auxiliary task.

  `data_dir` replaces the run's --data_dir, for data that has moved since training.
  """
  config = read_config(workdir)
  checkpoint = latest_checkpoint(workdir)
  if data_dir is not None:
    config = dataclasses.replace(config, data_dir=data_dir)
  split = load_split(config)
  height, width, channels = split.train.images.shape[1:]
  # What the network saw in training (InputPipeline.image_shape): CPC's patch grid depends on it.
  image_shape = (config.crop_size or height, config.crop_size or width, channels)
  model = build_model(config, split.num_classes, image_shape, split.mean, split.std)
  aux_task = make_auxiliary_task(config)
  trackables = dict(model=checkpoint_variables(model))
  if aux_task:
    aux_task.build(model, image_shape)
    trackables.update(aux_head=aux_task.checkpoint_variables)
  try:
    tf.train.Checkpoint(**trackables).restore(checkpoint).expect_partial(
    ).assert_existing_objects_matched()
  except (tf.errors.OpError, IndexError) as error:
    # Read errors (a truncated data file, an overwritten index), not a different model.
    raise UsageError(f'{checkpoint} is corrupt ({first_line(error)}): rerun the tfanom.train command of '
                     'this workdir, which sets it aside and resumes from the checkpoint before '
                     'it, then run this again') from None
  except (AssertionError, ValueError) as error:
    # The first sentence says what failed; the rest lists variables, far too long for one line.
    reason = str(error).split('. ')[0].strip()
    raise UsageError(f'{checkpoint} does not hold the weights of the model that {CONFIG_FILE} '
                     f'describes ({reason}): it was written by another run or by a tfanom '
                     'version that did not save every weight; retrain in a new --workdir'
                     ) from None
  return Run(config, split, model, aux_task, checkpoint)
