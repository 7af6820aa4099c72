"""The one place a model's anomaly scores are computed: in training, in evaluation and when served.

`Scorer` holds a model (and its auxiliary task): its features and logits of images in [0, 1], and
the formulas that need the network itself (ODIN, rotation) bound to it. `Batch` applies the formulas
of `tfanom.anomaly.REGISTRY` to one batch; `tfanom.inference.evaluator.Evaluator` runs it under a
strategy for training's evaluation, `tfanom.evaluate` and the export's calibration.
`ScoringModule` wraps a Scorer as a `tf.Module` with traced functions, which `tfanom.evaluate` calls
and `tfanom.export` saves. Saved, it keeps two signatures for TF Serving:
- `serving_default`: uint8 images [batch, H, W, C] -> `probabilities`, `class_id`, `class_name`,
  `msp_score`, `energy_score`, `max_logit_score`;
- `odin`: the same images -> `odin_score` (ODIN's input gradient step runs inside the graph);
every `*_score` is higher for more anomalous inputs (`max_logit_score` is the negated max logit).
It also keeps the functions `tfanom.inference.evaluation` scores with, and the run's metadata
(class names, held-out class, training config), so an export can be evaluated like a workdir.
"""

import functools
import json

import tensorflow as tf

from tfanom.anomaly import FITTED, REGISTRY, available_scores, scores
from tfanom.anomaly.scores import KNN_K
from tfanom.auxiliary import aux_norm_task
from tfanom.auxiliary.rotation import NUM_ROTATIONS
from tfanom.data.pipeline import center_crop, to_unit_range


def mirrored(images):
  return tf.reverse(images, axis=[2])


def shifted(images, rows: int, columns: int):
  """Images moved by one pixel (`rows`, `columns` in -1, 0, 1), the edge reflected in (airbench)."""
  height, width = images.shape[1], images.shape[2]
  padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode='REFLECT')
  return padded[:, 1 - rows:1 - rows + height, 1 - columns:1 - columns + width]


def tta_views(images, tta: str):
  """The (weight, view) pairs whose weighted mean of features `--tta` scores with.

  flip_translate is airbench94's level 2: half on the image and its mirror image, half on both
  mirrorings of the image moved one pixel up-left and one pixel down-right.
  """
  if tta == 'none':
    return [(1.0, images)]
  views = [(0.5, images), (0.5, mirrored(images))]
  if tta == 'flip':
    return views
  moved = [shifted(images, -1, -1), shifted(images, 1, 1)]
  return ([(0.25, view) for _, view in views]
          + [(0.125, view) for image in moved for view in (image, mirrored(image))])


class Scorer:
  """The scores of one model for images in [0, 1], shape [batch, H, W, C].

  `rotation_scores` exists only for models with a rotation head (`has_rotation`). With `tta`
  other than none, the features (and so the logits of the linear head, and every score but the
  rotation ones) are the weighted mean over `tta_views`.
  """

  def __init__(self, model, aux_task=None, norm_task: int = 0, tta: str = 'none'):
    self.model = model
    self.has_rotation = aux_task is not None and aux_task.name == 'rotation'
    self._aux_task = aux_task
    self._norm_task = norm_task
    self._tta = tta

  def features(self, images):
    return tf.add_n([weight * self.model.features(view, training=False)
                     for weight, view in tta_views(images, self._tta)])

  def logits(self, images):
    return self.model.class_head(self.features(images))

  def features_and_logits(self, images):
    features = self.features(images)
    return features, self.model.class_head(features)

  # The formulas that need the network itself (REGISTRY's `model_function`), bound to it.
  def odin_scores(self, images, temperature, epsilon):
    return scores.odin(self.logits, images, temperature, epsilon)

  def rotation_logits(self, images):
    """The rotation head's logits [R * B, R] of every rotated copy, stacked by rotation, and the
    true rotations [R * B]."""
    return self._aux_task.logits_and_labels(self.model, images, training=False,
                                            norm_task=self._norm_task)

  def rotation_scores(self, images):
    return scores.rotation(*self.rotation_logits(images), NUM_ROTATIONS)


class Batch:
  """One batch of images in [0, 1] and the scores of `REGISTRY` on it; the features and logits,
  and every score, are computed at most once.

  `functions` is a Scorer or a ScoringModule (live or loaded): anything with their functions.
  `inputs` holds what the formulas take beside the batch: the FITTED statistics (NumPy arrays,
  tensors or the SavedModel's variables), `odin_temperature`, `odin_epsilon` and `knn_k`.
  """

  def __init__(self, functions, unit, inputs: dict | None = None):
    self.functions = functions
    self.unit = unit
    self._inputs = dict(inputs or {}, images=unit, num_rotations=NUM_ROTATIONS)
    self._scores = {}

  @functools.cached_property
  def _features_and_logits(self):
    return self.functions.features_and_logits(self.unit)

  @property
  def features(self):
    return self._features_and_logits[0]

  @property
  def logits(self):
    return self._features_and_logits[1]

  def argument(self, name: str):
    """What a formula's argument `name` is on this batch."""
    if name in REGISTRY:
      return self.score(name)
    if name in ('features', 'logits'):
      return getattr(self, name)
    return self._inputs[name]

  def score(self, name: str):
    """The score `name`: its registry formula applied to its arguments."""
    if name not in self._scores:
      score = REGISTRY[name]
      formula = (getattr(self.functions, score.model_function) if score.model_function
                 else getattr(scores, name))
      self._scores[name] = formula(*(self.argument(argument) for argument in score.arguments))
    return self._scores[name]

  def scores(self, names) -> dict:
    return {name: self.score(name) for name in names}


def fitted_inputs(statistics, kernel, bias, knn_k: int) -> dict:
  """The FITTED arguments of the formulas: `statistics` has the fields of
  `tfanom.inference.features.FeatureStatistics` (or is None: no feature score), with the class
  head's `kernel` and `bias` and KNN's k."""
  fields = {} if statistics is None else {
      name: getattr(statistics, name) for name in FITTED if name not in ('kernel', 'bias')}
  return dict(fields, kernel=kernel, bias=bias, knn_k=knn_k)


def _constant(value, name, dtype):
  """Metadata kept in the SavedModel, readable after `tf.saved_model.load` as `.numpy()`."""
  return tf.Variable(value, dtype=dtype, trainable=False, name=name)


class _Statistics(tf.Module):
  """The feature statistics as variables (FeatureStatistics's fields), saved with the model."""

  def __init__(self, statistics):
    super().__init__(name='statistics')
    for field, value in vars(statistics).items():
      setattr(self, field, tf.Variable(value, trainable=False, name=field))


class ScoringModule(tf.Module):
  """A restored model's scoring functions; `tf.saved_model.load` returns the same attributes.

  Every function takes images at the run's stored size [batch, H, W, C] (`--image_size`) and
  scores their central `--crop_size` square, the view in-training evaluation scores
  (`InputPipeline.eval_dataset` calls the same `center_crop`).
  Functions on float images in [0, 1]:
    features_and_logits(images) -> (penultimate features, class logits)
    odin_scores(images, temperature, epsilon) -> ODIN scores
    rotation_scores(images) -> rotation scores (only when the model has a rotation head)
  Functions on uint8 images, which check their shape (the signatures):
    serve(images) -> dict of `serving_default` outputs;  odin(images) -> {'odin_score', ...}
  Variables: class_names (the known classes, by class id), holdout_index, holdout_name,
  image_shape, config_json (the run's TrainConfig), odin_temperature, odin_epsilon (used by `odin`),
  class_head_kernel [D, C] and class_head_bias [C].

  With a `Detector` (what `tfanom.export` builds), `serve` also gives the feature scores from the
  stored `statistics`, and both signatures answer `anomaly_score`/`is_anomaly` for the chosen
  score; variables: knn_k, score_names, normal_rates, thresholds [scores, rates], calibration_json,
  anomaly_score_name, normal_rate, threshold (the chosen score's), odin_threshold.
  """

  def __init__(self, run, odin_temperature: float, odin_epsilon: float, detector=None):
    """`run`: a restored run (`tfanom.inference.restore.RestoredRun`): config, split, model, aux task;
    `detector`: a `tfanom.inference.calibration.Detector`, or None for the logit scores only."""
    super().__init__(name='tfanom')
    split = run.split
    self.model = run.model
    self._scorer = Scorer(run.model, run.aux_task, aux_norm_task(run.config), run.config.tta)
    self._shape = tuple(int(d) for d in split.train.images.shape[1:])
    self.class_names = _constant(list(split.known_class_names), 'class_names', tf.string)
    self.holdout_index = _constant(split.holdout_index, 'holdout_index', tf.int64)
    self.holdout_name = _constant(split.holdout_name, 'holdout_name', tf.string)
    self.image_shape = _constant(list(self._shape), 'image_shape', tf.int64)
    self.config_json = _constant(json.dumps(run.config.to_dict()), 'config_json', tf.string)
    self.odin_temperature = _constant(odin_temperature, 'odin_temperature', tf.float32)
    self.odin_epsilon = _constant(odin_epsilon, 'odin_epsilon', tf.float32)
    # The class head's weights, which the feature scores fDBD, ViM and ReAct use.
    self.class_head_kernel = run.model.class_head.kernel.value
    self.class_head_bias = run.model.class_head.bias.value
    self._detector = detector
    # Scores of one forward pass; ODIN's input gradient stays in its own signature.
    self._served = tuple(name for name in available_scores(self._scorer.has_rotation,
                                                           detector is not None) if name != 'odin')
    if detector is not None:
      self.statistics = _Statistics(detector.statistics)
      self.knn_k = _constant(detector.knn_k, 'knn_k', tf.int64)
      calibration = detector.calibration
      self.score_names = _constant(list(calibration.thresholds), 'score_names', tf.string)
      self.normal_rates = _constant(list(calibration.rates), 'normal_rates', tf.float64)
      self.thresholds = _constant(list(calibration.thresholds.values()), 'thresholds', tf.float32)
      self.calibration_json = _constant(json.dumps(calibration.to_dict()), 'calibration_json',
                                        tf.string)
      self.anomaly_score_name = _constant(detector.score, 'anomaly_score_name', tf.string)
      self.normal_rate = _constant(detector.normal_rate, 'normal_rate', tf.float64)
      self.threshold = _constant(detector.threshold(detector.score), 'threshold', tf.float32)
      self.odin_threshold = _constant(detector.threshold('odin'), 'odin_threshold', tf.float32)
    unit = tf.TensorSpec([None, *self._shape], tf.float32, name='images')
    # A loaded signature does not enforce its declared shape, so `_unit_images` checks it.
    raw = tf.TensorSpec([None, *self._shape], tf.uint8, name='images')
    scalar = tf.TensorSpec([], tf.float32)
    self._crop = crop = functools.partial(center_crop, size=run.config.crop_size)
    self.features_and_logits = tf.function(
        lambda images: self._scorer.features_and_logits(crop(images)), input_signature=[unit])
    self.odin_scores = tf.function(
        lambda images, temperature, epsilon: self._scorer.odin_scores(crop(images), temperature,
                                                                       epsilon),
        input_signature=[unit, scalar, scalar])
    self.serve = tf.function(self._serve, input_signature=[raw])
    self.odin = tf.function(self._odin, input_signature=[raw])
    if self._scorer.has_rotation:
      self.aux_head = run.aux_task.head
      self.rotation_scores = tf.function(
          lambda images: self._scorer.rotation_scores(crop(images)), input_signature=[unit])

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
      return self._crop(tf.ensure_shape(to_unit_range(images), [None, *self._shape]))

  def _scores(self, batch, names):
    """`names`' scores of `batch`, as float32 (the served outputs and the calibrated thresholds)."""
    return {name: tf.cast(value, tf.float32) for name, value in batch.scores(names).items()}

  def _batch(self, unit):
    """A Batch with the module's fitted statistics and ODIN settings (its variables: a dict of
    them kept as an attribute would add paths to the SavedModel's object graph)."""
    detector = self._detector
    inputs = fitted_inputs(self.statistics if detector else None, self.class_head_kernel,
                           self.class_head_bias, detector.knn_k if detector else KNN_K)
    return Batch(self._scorer, unit, dict(inputs, odin_temperature=self.odin_temperature,
                                          odin_epsilon=self.odin_epsilon))

  def _serve(self, images):
    unit = self._unit_images(images)
    batch = self._batch(unit)
    class_id = tf.argmax(batch.logits, axis=-1)
    outputs = dict(probabilities=tf.nn.softmax(batch.logits, axis=-1), class_id=class_id,
                   class_name=tf.gather(self.class_names, class_id))
    chosen = self._detector.score if self._detector else None
    names = self._served + (('odin',) if chosen == 'odin' else ())
    computed = self._scores(batch, names)
    outputs.update({f'{name}_score': computed[name] for name in self._served})
    if chosen:
      outputs.update(anomaly_score=computed[chosen], is_anomaly=computed[chosen] > self.threshold)
    return outputs

  def _odin(self, images):
    odin = self._scores(self._batch(self._unit_images(images)), ('odin',))['odin']
    outputs = dict(odin_score=odin)
    if self._detector:
      outputs.update(is_anomaly=odin > self.odin_threshold)
    return outputs
