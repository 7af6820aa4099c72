"""Rebuilds a trained model from its workdir: config.json, the hold-out split and the checkpoint.

The model is built outside any distribution strategy and restored without the optimizers, which
is what evaluation and export need.
"""

import dataclasses
import os

import tensorflow as tf

from tfanom.auxiliary import make_auxiliary_task
from tfanom.config import TrainConfig, setting
from tfanom.data.holdout import HoldoutSplit
from tfanom.data.sources import load_split
from tfanom.errors import UsageError
from tfanom.models import Trunk, build_model
from tfanom.training.checkpoints import RunCheckpoint
from tfanom.workdir import CHECKPOINT_DIR, read_config


# Settings of evaluation and export that replace a restored run's own; unset: the run's.
def data_dir_override():
  return setting(None, "Replaces the run's --data_dir, for data moved since training (the class "
                 'names and image size come from the data).')


def odin_temperature_override():
  return setting(None, "ODIN's temperature; default the run's (1000). Never tuned on anomalies.",
                 above=0)


def odin_epsilon_override():
  return setting(None, "ODIN's input step, on the scale of the run's --odin_step; default the "
                 "run's (5e-5).", minimum=0)


@dataclasses.dataclass
class RestoredRun:
  config: TrainConfig
  split: HoldoutSplit
  model: Trunk
  aux_task: object  # the auxiliary task (its head restored), or None
  checkpoint: str  # the restored checkpoint's path prefix


def load_run(workdir: str, data_dir: str | None = None, log=print) -> RestoredRun:
  """The model of the newest usable checkpoint in `workdir`, with its config, split and auxiliary
  task.

  `data_dir` replaces the run's --data_dir, for data that has moved since training.
  """
  config = read_config(workdir)
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not tf.train.get_checkpoint_state(directory):  # before the data: it may take minutes to load
    raise _no_checkpoint(workdir)
  if data_dir is not None:
    config = dataclasses.replace(config, data_dir=data_dir)
  split = load_split(config, log)
  height, width, channels = split.train.images.shape[1:]
  # What the network saw in training (InputPipeline.image_shape): CPC's patch grid depends on it.
  image_shape = (config.crop_size or height, config.crop_size or width, channels)
  model = build_model(config, split.num_classes, image_shape, split.mean, split.std)
  aux_task = make_auxiliary_task(config)
  if aux_task:
    aux_task.build(model, image_shape)
  checkpoint = RunCheckpoint(directory, model, aux_task, log=log).restore()
  if checkpoint is None:  # every listed checkpoint's files are gone
    raise _no_checkpoint(workdir)
  return RestoredRun(config, split, model, aux_task, checkpoint)


def _no_checkpoint(workdir: str) -> UsageError:
  return UsageError(f'--workdir={workdir} has no checkpoint in {CHECKPOINT_DIR}/: train it first '
                    '(python -m tfanom.train --workdir=...) or pass another --workdir')
