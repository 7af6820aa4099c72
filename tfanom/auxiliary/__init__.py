"""Auxiliary self-supervised tasks trained in alternation with classification (paper section 4).

The training loop sees every task through the same interface:
  name                      as in --aux
  build(model, image_shape) creates the task's own layers for a built WideResNet and images of
                            `image_shape` (H, W, C); raises UsageError when its settings do not fit
  loss_terms_per_image      loss terms one auxiliary image yields (after build): the global batch
                            of the auxiliary loss is aux_batch_size * loss_terms_per_image
  loss(model, images, training, norm_task, update_stats) -> (per_term_loss, correct)
                            for images in [0, 1]: one loss and one hit (its prediction was right)
                            per term, flat, the trunk normalised with `norm_task`'s parameters
  train_variables(model, norm_task)
                            what an auxiliary step updates: the trunk it uses, with the
                            normalisation parameters of `norm_task`, then the task's own layers
  trainable_variables       the task's own layers' trainable variables (weight decay applies)
  checkpoint_variables      every variable of the task's own layers, saved with the model
"""

from tfanom.auxiliary.cpc import CPCTask
from tfanom.auxiliary.rotation import RotationTask
from tfanom.errors import UsageError
from tfanom.models.trunk import CLASSIFICATION_TASK

AUXILIARY_TASKS = ('none', 'rotation', 'cpc')
AUX_NORM_TASK = 1  # the auxiliary task's normalisation parameters with --aux_norm=conditional


def make_auxiliary_task(config):
  """The auxiliary task of a resolved TrainConfig, or None for classification-only training."""
  if config.aux == 'none':
    return None
  if config.aux == 'rotation':
    return RotationTask(config.rotations)
  if config.aux == 'cpc':
    return CPCTask(config.cpc_patch_size, config.cpc_patch_stride, config.cpc_steps)
  raise UsageError(f'--aux={config.aux} is unknown: choose one of {", ".join(AUXILIARY_TASKS)}')


def aux_norm_task(config) -> int:
  """The normalisation parameters the auxiliary task of a resolved TrainConfig uses."""
  return AUX_NORM_TASK if config.aux_norm == 'conditional' else CLASSIFICATION_TASK
