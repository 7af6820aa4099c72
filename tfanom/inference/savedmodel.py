"""SavedModel export for TF Serving: a calibrated `ScoringModule` written atomically to a version folder.

`export_run` restores a run, fits its feature statistics on the training split, calibrates every
score's thresholds on normal images (`tfanom.inference.calibration`) and saves the model with them.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tfanom.anomaly import SCORES, default_score
from tfanom.anomaly.scores import KNN_K, odin_unit_step
from tfanom.config import check_settings, setting
from tfanom.data.arrays import stratified_mask
from tfanom.data.decoding import decode_files, list_image_files, too_large
from tfanom.data.holdout import VALIDATION_FRACTION, holdout_text
from tfanom.errors import UsageError, first_line
from tfanom.inference.calibration import DEFAULT_NORMAL_RATE, Detector, calibrate, rates_with
from tfanom.inference.features import FeatureStatistics, file_fingerprint
from tfanom.inference.restore import (RestoredRun, data_dir_override, load_run, odin_epsilon_override,
                                      odin_temperature_override)
from tfanom.inference.scorer import ScoringModule, available_scores
from tfanom.inference.evaluator import feature_statistics, score_images
from tfanom.io import atomic_directory, check_replaceable, write_error
from tfanom.workdir import FEATURE_CACHE_FILE, unfinished_warning


def max_megapixels_setting():
  """The limit on the size of the user's images that `tfanom.score` and `--calibration_dir` decode."""
  return setting(64.0, 'Images of more pixels than this many millions are skipped and named, '
                 'unread: decoding takes about 25 bytes a pixel (a 12000 x 12000 PNG took 3.6 GB).',
                 above=0)


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What `python -m tfanom.export` writes; its flags are these fields."""
  workdir: str | None = setting(None, 'The training run whose latest checkpoint is exported.',
                                required=True)
  export_dir: str | None = setting(None, 'Where to write the SavedModel: a numbered version '
                                   'folder such as models/digits/1.', required=True)
  overwrite: bool = setting(False, 'Replace a non-empty --export_dir that holds only an earlier '
                           'tfanom export.')
  score: str | None = setting(None, 'The score behind anomaly_score and is_anomaly; default '
                              'rotpred for a model with a rotation head, else energy (the figures '
                              'behind them: docs/serving.md). Name the winner of your own '
                              'validation run here.', choices=SCORES)
  normal_rate: float = setting(DEFAULT_NORMAL_RATE, 'Share of normal images that is_anomaly '
                               'accepts: the threshold is calibrated on normal images only.',
                               above=0, below=1)
  calibration_dir: str | None = setting(None, 'A folder (read recursively) of normal images of '
                                        "the known classes to calibrate on; default the run's "
                                        'validation split, else a seeded slice of its training '
                                        'images.')
  max_megapixels: float = max_megapixels_setting()
  knn_bank_size: int = setting(0, 'Training features kept for the KNN score (a seeded '
                               'subsample); 0 keeps all of them.', minimum=0)
  batch_size: int | None = setting(None, "Images per batch; default the run's evaluation batch.",
                                   minimum=1)
  data_dir: str | None = data_dir_override()
  odin_temperature: float | None = odin_temperature_override()
  odin_epsilon: float | None = odin_epsilon_override()

  def check(self):
    check_settings(self)


def export_run(config: ExportConfig, log=print) -> tuple[RestoredRun, str, Detector]:
  """Calibrates and exports the latest checkpoint of `config.workdir`: the run, the export's path
  and the detector it serves."""
  config.check()
  check_export_dir(config.export_dir, config.overwrite)
  run = load_run(config.workdir, config.data_dir)
  warning = unfinished_warning(config.workdir, run.checkpoint)
  if warning:
    log(warning)
  temperature = (run.config.odin_temperature if config.odin_temperature is None
                 else config.odin_temperature)
  epsilon = odin_unit_step(run.config.odin_epsilon if config.odin_epsilon is None
                           else config.odin_epsilon, run.config.odin_step)
  detector = build_detector(run, config, temperature, epsilon, log)
  return run, export(run, config.export_dir, config.overwrite, temperature, epsilon,
                     detector), detector


def build_detector(run: RestoredRun, config: ExportConfig, odin_temperature: float, odin_epsilon: float,
                   log=print) -> Detector:
  """Fits the feature statistics and calibrates every score's thresholds on normal images."""
  module = ScoringModule(run, odin_temperature, odin_epsilon)
  has_rotation = hasattr(module, 'rotation_scores')
  names = available_scores(has_rotation)
  score = config.score or default_score(has_rotation)
  if score not in names:
    raise UsageError(f'--score={score} needs a rotation head, but this model was trained '
                     f'with --aux={run.config.aux}: choose one of {",".join(names)}')
  batch_size = config.batch_size or run.config.eval_batch_size
  statistics = feature_statistics(module, run.split, batch_size,
                                  file_fingerprint([run.checkpoint + '.index']),
                                  os.path.join(config.workdir, FEATURE_CACHE_FILE), log)
  full_bank = len(statistics.bank)
  statistics = subsample_bank(statistics, config.knn_bank_size, run.config.seed)
  knn_k = knn_k_for(full_bank, len(statistics.bank))
  images, source = calibration_images(run, config.calibration_dir, log, config.max_megapixels)
  settings = dict(batch_size=batch_size, odin_temperature=odin_temperature,
                  odin_epsilon=odin_epsilon, knn_k=knn_k)
  values = score_images(module, images, names, statistics, settings,
                        f'calibrating on {len(images)} normal images', log)
  calibration = calibrate({name: values[name] for name in names},
                          rates_with(config.normal_rate), source)
  return Detector(statistics, knn_k, calibration, score, float(config.normal_rate))


def subsample_bank(statistics: FeatureStatistics, size: int, seed: int) -> FeatureStatistics:
  """`statistics` with a seeded subsample of `size` rows of the KNN bank (0 or more: all)."""
  if not size or size >= len(statistics.bank):
    return statistics
  rows = np.sort(np.random.default_rng(seed).choice(len(statistics.bank), size, replace=False))
  return dataclasses.replace(statistics, bank=statistics.bank[rows])


def knn_k_for(full_bank: int, kept: int) -> int:
  """KNN's k for a bank of `kept` of `full_bank` training features: k scales with the bank, so that
  the k-th neighbour of a subsample lies at about the same density of training features as the
  k-th of the full bank."""
  k = min(KNN_K, full_bank)
  return max(1, round(k * kept / full_bank))


def calibration_images(run: RestoredRun, calibration_dir: str | None, log=print,
                       max_megapixels: float = 64.0):
  """Normal images of the known classes that calibrate the thresholds, and where they came from.

  In order of preference: the user's folder; the run's validation split (known classes only),
  which training never saw; else a seeded 20% of the training images, which the model has seen,
  so their scores are lower than new images' and the thresholds accept fewer than the rate asked.
  """
  split = run.split
  if calibration_dir:
    height, width, channels = split.train.images.shape[1:]
    files = list_image_files(calibration_dir, '--calibration_dir')
    oversized = too_large(files, max_megapixels)
    if oversized:
      log(f'calibration: skipped {len(oversized)} images of more than '
          f'--max_megapixels={max_megapixels:g}, unread: ' + ', '.join(sorted(oversized)[:3]) +
          (', ...' if len(oversized) > 3 else ''))
    todo = [path for path in files if path not in oversized]
    parts = [images for images, _ in decode_files(todo, height, channels)]
    count = sum(len(images) for images in parts)
    if not count:
      raise UsageError(f'--calibration_dir={calibration_dir}: none of its {len(files)} files is a '
                       'readable image' + (f' of at most --max_megapixels={max_megapixels:g}'
                                           if oversized else ''))
    if count < len(todo):
      log(f'calibration: skipped {len(todo) - count} of {len(files)} files that are not '
          'readable images')
    return np.concatenate(parts), f'{count} images of --calibration_dir={calibration_dir}'
  if run.config.validation:
    known = ~split.is_anomaly
    return (split.evaluation.images[known],
            f'{int(known.sum())} known-class images of the validation split')
  chosen = stratified_mask(split.train.labels, VALIDATION_FRACTION, run.config.seed)
  log(f'calibration: the run has no validation split, so {int(chosen.sum())} of its training '
      'images are used; the model has seen them, so fewer new normal images than the rate will be '
      'accepted: pass --calibration_dir, or train with --validation')
  return (split.train.images[chosen],
          f'{int(chosen.sum())} training images (seen in training; a seeded 20%)')


def export_summary(run: RestoredRun, path: str, detector: Detector) -> str:
  """What an export holds, in a few lines."""
  calibration = detector.calibration
  rate = detector.normal_rate
  met = calibration.rates_met[detector.score][calibration.rates.index(rate)]
  held_out = holdout_text(run.split.holdout_index, run.split.holdout_name)
  return (f'exported {run.checkpoint} ({held_out}) to {path}: signatures serving_default, odin\n'
          f'is_anomaly: {detector.score} > {detector.threshold(detector.score):.6g}, accepting '
          f'{rate:g} of normal images (calibrated on {calibration.source}; {met:.4f} of them '
          f'accepted)\n'
          f'thresholds of {len(calibration.thresholds)} scores at normal rates '
          f'{", ".join(f"{r:g}" for r in calibration.rates)}; KNN bank of '
          f'{len(detector.statistics.bank)} training features, k = {detector.knn_k}')


def check_export_dir(export_dir: str, overwrite: bool) -> None:
  if not os.path.basename(os.path.normpath(export_dir)).isdigit():
    raise UsageError(f'--export_dir={export_dir} must end in a numbered version folder, as TF '
                     f'Serving expects: e.g. --export_dir={os.path.join(export_dir, "1")}')
  check_replaceable(export_dir, '--export_dir', overwrite)


def export(run: RestoredRun, export_dir: str, overwrite: bool = False,
           odin_temperature: float | None = None, odin_epsilon: float | None = None,
           detector: Detector | None = None) -> str:
  """Saves `run`'s model as a SavedModel in `export_dir` (a numbered version folder).

  ODIN's temperature and step default to the run's; without a `detector` (`build_detector`) only
  the logit scores are served. The SavedModel is written to a temporary
  folder beside `export_dir` and renamed into place, so a failure leaves nothing half-written and
  an existing export is replaced only once the new one is complete.
  """
  check_export_dir(export_dir, overwrite)
  try:
    return _export(run, os.path.normpath(export_dir), odin_temperature, odin_epsilon, detector)
  except (OSError, tf.errors.OpError) as error:
    raise write_error(export_dir, error) from None


def _export(run, export_dir, odin_temperature, odin_epsilon, detector) -> str:
  module = ScoringModule(
      run,
      run.config.odin_temperature if odin_temperature is None else odin_temperature,
      odin_unit_step(run.config.odin_epsilon, run.config.odin_step) if odin_epsilon is None
      else odin_epsilon, detector)
  with atomic_directory(export_dir, '--export_dir') as staging:
    signatures = {'serving_default': module.serve.get_concrete_function(),
                  'odin': module.odin.get_concrete_function()}
    tf.saved_model.save(module, staging, signatures=signatures)
  return export_dir


def load_export(export_dir: str):
  """A SavedModel written by `export`, with the attributes of `ScoringModule`."""
  if not tf.saved_model.contains_saved_model(export_dir):
    raise UsageError(f'--export_dir={export_dir} holds no SavedModel: pass a version folder '
                     'written by python -m tfanom.export')
  try:
    loaded = tf.saved_model.load(export_dir)
  except (OSError, IndexError, ValueError, tf.errors.OpError) as error:
    # A junk saved_model.pb ("Cannot parse file", an OSError) or truncated variables ("Read less
    # bytes than requested", an IndexError).
    raise UsageError(f'--export_dir={export_dir} is damaged ({first_line(error)}): export it again '
                     'with python -m tfanom.export --workdir=RUN --export_dir=... --overwrite'
                     ) from None
  if not hasattr(loaded, 'features_and_logits'):
    raise UsageError(f'--export_dir={export_dir} is not a tfanom export: pass a version folder '
                     'written by python -m tfanom.export')
  return loaded
