"""The functions serving and evaluation call on one model, and their export as a SavedModel.

`ScoringModule` wraps a restored model. Saved, it keeps two signatures for TF Serving:
- `serving_default`: uint8 images [batch, H, W, C] -> `probabilities`, `class_id`, `class_name`,
  `msp_score`, `energy_score`, `max_logit_score`;
- `odin`: the same images -> `odin_score` (ODIN's input gradient step runs inside the graph);
every `*_score` is higher for more anomalous inputs (`max_logit_score` is the negated max logit).
It also keeps the functions `tfanom.evaluation` scores with, and the run's metadata (class names,
held-out class, training config), so an export can be evaluated like a workdir.
"""

import json
import os
import shutil
import tempfile

import tensorflow as tf

from tfanom import scoring
from tfanom.auxiliary.rotation import NUM_ROTATIONS
from tfanom.checkpoints import Run
from tfanom.data.pipeline import to_unit_range
from tfanom.errors import UsageError
from tfanom.results import current_umask
from tfanom.training import aux_norm_task

def _constant(value, name, dtype):
  """Metadata kept in the SavedModel, readable after `tf.saved_model.load` as `.numpy()`."""
  return tf.Variable(value, dtype=dtype, trainable=False, name=name)


class ScoringModule(tf.Module):
  """A restored model's scoring functions; `tf.saved_model.load` returns the same attributes.

  Functions on float images in [0, 1], shape [batch, H, W, C]:
    features_and_logits(images) -> (penultimate features, class logits)
    odin_scores(images, temperature, epsilon) -> ODIN scores
    rotation_scores(images) -> rotation scores (only when the model has a rotation head)
  Functions on uint8 images, which check their shape (the signatures):
    serve(images) -> dict of `serving_default` outputs;  odin(images) -> {'odin_score': ...}
  Variables: class_names (the known classes, by class id), holdout_index, holdout_name,
  image_shape, config_json (the run's TrainConfig), odin_temperature, odin_epsilon (used by `odin`).
  """

  def __init__(self, run: Run, odin_temperature: float, odin_epsilon: float):
    super().__init__(name='tfanom')
    split = run.split
    self.model = run.model
    self._shape = tuple(int(d) for d in split.train.images.shape[1:])
    self.class_names = _constant(list(split.known_class_names), 'class_names', tf.string)
    self.holdout_index = _constant(split.holdout_index, 'holdout_index', tf.int64)
    self.holdout_name = _constant(split.holdout_name, 'holdout_name', tf.string)
    self.image_shape = _constant(list(self._shape), 'image_shape', tf.int64)
    self.config_json = _constant(json.dumps(run.config.to_dict()), 'config_json', tf.string)
    self.odin_temperature = _constant(odin_temperature, 'odin_temperature', tf.float32)
    self.odin_epsilon = _constant(odin_epsilon, 'odin_epsilon', tf.float32)
    unit = tf.TensorSpec([None, *self._shape], tf.float32, name='images')
    # A loaded signature does not enforce its declared shape, so `_unit_images` checks it.
    raw = tf.TensorSpec([None, *self._shape], tf.uint8, name='images')
    scalar = tf.TensorSpec([], tf.float32)
    self.features_and_logits = tf.function(self._features_and_logits, input_signature=[unit])
    self.odin_scores = tf.function(self._odin_scores, input_signature=[unit, scalar, scalar])
    self.serve = tf.function(self._serve, input_signature=[raw])
    self.odin = tf.function(self._odin, input_signature=[raw])
    if run.aux_task is not None and run.aux_task.name == 'rotation':
      self._aux_task = run.aux_task
      self._aux_norm_task = aux_norm_task(run.config)
      self.aux_head = run.aux_task.head
      self.rotation_scores = tf.function(self._rotation_scores, input_signature=[unit])

  def _logits(self, images):
    return self.model(images, training=False)

  def _features_and_logits(self, images):
    features = self.model.features(images, training=False)
    return features, self.model.class_head(features)

  def _odin_scores(self, images, temperature, epsilon):
    return scoring.odin(self._logits, images, temperature, epsilon)

  def _rotation_scores(self, images):
    logits, labels = self._aux_task.logits_and_labels(self.model, images, training=False,
                                                      norm_task=self._aux_norm_task)
    return scoring.rotation(logits, labels, NUM_ROTATIONS)

  def _unit_images(self, images):
    """uint8 pixels to [0, 1], after checking that they are [batch, H, W, C] of the model's size."""
    shape = tf.shape(images, out_type=tf.int64)
    expected = tf.constant(self._shape, tf.int64)
    # Padding lets an input of the wrong rank reach the message instead of a broadcasting error.
    padded = tf.concat([shape, tf.zeros([4], tf.int64)], 0)
    valid = tf.logical_and(tf.equal(tf.size(shape), 4),
                           tf.reduce_all(tf.equal(padded[1:4], expected)))
    height, width, channels = self._shape
    check = tf.debugging.Assert(valid, [
        f'images must be uint8 pixels of shape [batch, {height}, {width}, {channels}]; got shape',
        shape], summarize=8)
    with tf.control_dependencies([check]):
      return tf.ensure_shape(to_unit_range(images), [None, *self._shape])

  def _serve(self, images):
    logits = self._logits(self._unit_images(images))
    class_id = tf.argmax(logits, axis=-1)
    return dict(probabilities=tf.nn.softmax(logits, axis=-1), class_id=class_id,
                class_name=tf.gather(self.class_names, class_id), msp_score=scoring.msp(logits),
                energy_score=scoring.energy(logits), max_logit_score=scoring.max_logit(logits))

  def _odin(self, images):
    return dict(odin_score=self._odin_scores(self._unit_images(images), self.odin_temperature,
                                             self.odin_epsilon))


def check_export_dir(export_dir: str, overwrite: bool) -> None:
  if not os.path.basename(os.path.normpath(export_dir)).isdigit():
    raise UsageError(f'--export_dir={export_dir} must end in a numbered version folder, as TF '
                     f'Serving expects: e.g. --export_dir={os.path.join(export_dir, "1")}')
  if os.path.exists(export_dir):
    if not os.path.isdir(export_dir):
      raise UsageError(f'--export_dir={export_dir} is a file: choose another path')
    if os.listdir(export_dir) and not overwrite:
      raise UsageError(f'--export_dir={export_dir} exists and is not empty: choose another '
                       'version folder, or pass --overwrite to replace it')


def export(run: Run, export_dir: str, overwrite: bool = False,
           odin_temperature: float | None = None, odin_epsilon: float | None = None) -> str:
  """Saves `run`'s model as a SavedModel in `export_dir` (a numbered version folder).

  ODIN's temperature and step default to the run's. The SavedModel is written to a temporary
  folder beside `export_dir` and renamed into place, so a failure leaves nothing half-written and
  an existing export is replaced only once the new one is complete.
  """
  check_export_dir(export_dir, overwrite)
  export_dir = os.path.normpath(export_dir)
  parent = os.path.dirname(os.path.abspath(export_dir))
  os.makedirs(parent, exist_ok=True)
  module = ScoringModule(
      run,
      run.config.odin_temperature if odin_temperature is None else odin_temperature,
      run.config.odin_epsilon if odin_epsilon is None else odin_epsilon)
  staging = tempfile.mkdtemp(dir=parent, prefix=f'.tmp-{os.path.basename(export_dir)}-')
  try:
    # mkdtemp makes a private folder; a model server running as another user must read it.
    os.chmod(staging, 0o777 & ~current_umask())
    signatures = {'serving_default': module.serve.get_concrete_function(),
                  'odin': module.odin.get_concrete_function()}
    tf.saved_model.save(module, staging, signatures=signatures)
    if os.path.exists(export_dir):
      # Rename the old export aside first: a directory can only replace an empty one.
      retired = tempfile.mkdtemp(dir=parent, prefix=f'.old-{os.path.basename(export_dir)}-')
      previous = os.path.join(retired, 'export')
      os.rename(export_dir, previous)
      try:
        os.rename(staging, export_dir)
      except OSError:
        os.rename(previous, export_dir)
        raise
      shutil.rmtree(retired)
    else:
      os.rename(staging, export_dir)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)
  return export_dir


def load_export(export_dir: str):
  """A SavedModel written by `export`, with the attributes of `ScoringModule`."""
  if not tf.saved_model.contains_saved_model(export_dir):
    raise UsageError(f'--export_dir={export_dir} holds no SavedModel: pass a version folder '
                     'written by python -m tfanom.export')
  loaded = tf.saved_model.load(export_dir)
  if not hasattr(loaded, 'features_and_logits'):
    raise UsageError(f'--export_dir={export_dir} is not a tfanom export: pass a version folder '
                     'written by python -m tfanom.export')
  return loaded
