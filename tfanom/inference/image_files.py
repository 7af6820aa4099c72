"""Scores a folder (or glob) of new, unlabelled image files with an exported detector.

Each readable file is decoded, converted to the model's channels, resized (shorter side) and
centre-cropped to its size as its training images were, and scored in batches by the SavedModel:
every score of `serving_default` and `odin`, and the decision of one score at one calibrated normal
rate. Written to OUTPUT (all at once, when everything has succeeded):
- `scores.csv`: path, class_name, probability, one column per score, anomaly_score, is_anomaly;
- `gallery.html` and `gallery.png`: the most and least anomalous images, as scored (centre-cropped
  to the export's crop size);
- `summary.json`: counts, the score and threshold used, the skipped files, and with
  `labels_from_folders` the AP/AUROC of every score and the share flagged per group.
"""

import csv
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from tfanom.anomaly import metrics
from tfanom.config import check_settings, setting
from tfanom.data.decoding import (decode_files, find_image_files, input_root, too_large,
                                  utf8_name)
from tfanom.data.pipeline import center_crop
from tfanom.errors import UsageError
from tfanom.inference import gallery
from tfanom.inference.savedmodel import load_export, max_megapixels_setting
from tfanom.io import atomic_directory, check_replaceable, standard_json, write_error
from tfanom.progress import Throttle

CSV_FILE = 'scores.csv'
HTML_FILE = 'gallery.html'
PNG_FILE = 'gallery.png'
SUMMARY_FILE = 'summary.json'


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
  """What `python -m tfanom.score` scores; its flags are these fields."""
  export_dir: str | None = setting(None, 'A SavedModel version folder written by tfanom.export.',
                                   required=True)
  images: str | None = setting(None, 'A folder of images (read recursively) or a glob such as '
                               '"photos/*.jpg".', required=True)
  output: str | None = setting(None, 'The folder to write scores.csv, gallery.html, gallery.png '
                               'and summary.json to.', required=True)
  overwrite: bool = setting(False, 'Replace a non-empty --output that holds only the outputs of '
                           'an earlier tfanom.score.')
  score: str | None = setting(None, "The score behind anomaly_score and is_anomaly; default the "
                              "export's (--score of tfanom.export).")
  normal_rate: float | None = setting(None, "Share of normal images accepted; default the export's. "
                                      'Must be one of the rates the export was calibrated at.',
                                      above=0, below=1)
  labels_from_folders: tuple[str, ...] = setting((), 'Names of folders whose images are '
                                                 'anomalies (every other image is normal): reports '
                                                 'AP and AUROC of every score.')
  batch_size: int = setting(128, 'Images per batch.', minimum=1)
  gallery_size: int = setting(16, 'Images in each half of the gallery (most and least anomalous).',
                              minimum=1)
  max_megapixels: float = max_megapixels_setting()

  def check(self):
    check_settings(self)


def load_detector(export_dir: str):
  """An export with thresholds; an export by an older tfanom has none and must be re-exported."""
  loaded = load_export(export_dir)
  if not hasattr(loaded, 'thresholds'):
    raise UsageError(f'--export_dir={export_dir} was exported without calibrated thresholds (by an '
                     'older tfanom): export it again with python -m tfanom.export '
                     '--workdir=RUN --export_dir=...')
  return loaded


def decision(loaded, score: str | None, normal_rate: float | None) -> tuple[str, float, float]:
  """(score, normal rate, threshold): the export's choice unless given."""
  names = [name.decode() for name in loaded.score_names.numpy()]
  rates = [float(rate) for rate in loaded.normal_rates.numpy()]
  score = score or loaded.anomaly_score_name.numpy().decode()
  rate = float(loaded.normal_rate.numpy()) if normal_rate is None else float(normal_rate)
  if score not in names:
    raise UsageError(f'--score={score} is not served by this export: choose from '
                     f'{",".join(names)}')
  matches = [i for i, known in enumerate(rates) if abs(known - rate) < 1e-9]
  if not matches:
    raise UsageError(f'--normal_rate={rate:g} was not calibrated in this export: choose from '
                     f'{", ".join(f"{r:g}" for r in rates)}, or export again with '
                     f'--normal_rate={rate:g}')
  threshold = loaded.thresholds.numpy()[names.index(score), matches[0]]
  return score, rate, float(threshold)


def score_files(config: ScoreConfig, log=print) -> dict:
  """Scores every readable file of `config.images`; returns the summary written to OUTPUT."""
  config.check()
  check_replaceable(config.output, '--output', config.overwrite, [input_root(config.images)])
  loaded = load_detector(config.export_dir)
  score, rate, threshold = decision(loaded, config.score, config.normal_rate)
  files, hidden = find_image_files(config.images)
  anomalous = set(config.labels_from_folders)
  if anomalous:
    folders = {os.path.basename(os.path.dirname(path)) for path in files}
    missing = sorted(anomalous - folders)
    if missing:
      raise UsageError(f'--labels_from_folders: no folder named {", ".join(missing)} holds files '
                       f'of --images={config.images}; folders there: '
                       f'{", ".join(sorted(folders)[:10])}')
  # Names that are not UTF-8 cannot go into scores.csv: skipped and named by their repr.
  unnamed = [path for path in files if not utf8_name(path)]
  files = [path for path in files if utf8_name(path)]
  oversized = too_large(files, config.max_megapixels)
  todo = [path for path in files if path not in oversized]
  height, _, channels = (int(d) for d in loaded.image_shape.numpy())
  # The export scores the central --crop_size square of each image: the gallery shows that.
  crop_size = json.loads(loaded.config_json.numpy())['crop_size']
  extremes = gallery.Extremes(config.gallery_size)
  rows, columns, kept = [], {}, set()
  throttle = Throttle()
  for images, positions in decode_files(todo, height, channels):
    for begin in range(0, len(images), config.batch_size):
      part = images[begin:begin + config.batch_size]
      batch_rows, batch_columns = _score_batch(loaded, part, positions[begin:begin + len(part)],
                                               todo, score, threshold)
      rows += batch_rows
      for name, values in batch_columns.items():
        columns.setdefault(name, []).append(values)
      extremes.update(center_crop(part, crop_size), batch_columns[score], batch_rows)
    kept.update(positions.tolist())
    if throttle.due():
      log(f'scoring: {len(kept)}/{len(todo)} files ({len(kept) / throttle.elapsed():.0f} img/s)')
  unreadable = [repr(path) for path in unnamed] + [
      path for position, path in enumerate(todo) if position not in kept]
  if not rows:
    raise UsageError(f'--images={config.images}: none of its {len(files) + len(unnamed)} files '
                     'is a readable image (JPEG, PNG, GIF or BMP)' + (
                         f' of at most --max_megapixels={config.max_megapixels:g}'
                         if oversized else ''))
  columns = {name: np.concatenate(values) for name, values in columns.items()}
  flagged = np.array([row['is_anomaly'] for row in rows], bool)
  summary = dict(export_dir=config.export_dir, images=config.images,
                 files=len(files) + len(unnamed), scored=len(rows),
                 skipped=len(unreadable) + len(oversized), skipped_files=unreadable,
                 too_large=[dict(path=path, megapixels=pixels / 1e6)
                            for path, pixels in oversized.items()],
                 max_megapixels=config.max_megapixels, hidden=hidden, score=score,
                 normal_rate=rate, threshold=threshold, flagged=int(flagged.sum()))
  if anomalous:
    truth = np.array([os.path.basename(os.path.dirname(row['path'])) in anomalous for row in rows])
    summary['labels'] = _label_metrics(truth, flagged, columns, config.labels_from_folders)
  _write_outputs(config, rows, extremes, score, summary)
  log(_summary_lines(config, summary))
  return summary


def _score_batch(loaded, images, positions, files, score, threshold):
  """One batch's CSV rows and score columns."""
  inputs = tf.constant(images)
  outputs = {key: value.numpy() for key, value in loaded.serve(inputs).items()}
  outputs.update({key: value.numpy() for key, value in loaded.odin(inputs).items()
                  if key != 'is_anomaly'})
  names = [key[:-len('_score')] for key in outputs
           if key.endswith('_score') and key != 'anomaly_score']
  columns = {name: outputs[f'{name}_score'] for name in names}
  anomaly_score = columns[score]
  is_anomaly = anomaly_score > np.float32(threshold)
  probability = outputs['probabilities'].max(axis=-1)
  rows = []
  for i, position in enumerate(positions):
    row = dict(path=files[position], class_name=outputs['class_name'][i].decode(),
               probability=float(probability[i]))
    row.update({f'{name}_score': float(columns[name][i]) for name in sorted(names)})
    row.update(anomaly_score=float(anomaly_score[i]), is_anomaly=bool(is_anomaly[i]))
    rows.append(row)
  return rows, columns


def _label_metrics(truth, flagged, columns, folders) -> dict:
  if truth.all() or not truth.any():
    raise UsageError('--labels_from_folders: AP needs anomalous and normal images, but '
                     f'{"every" if truth.all() else "no"} scored image is in '
                     f'{", ".join(folders)}')
  return dict(
      anomalous_folders=list(folders), anomalies=int(truth.sum()), normal=int((~truth).sum()),
      flagged_share_of_anomalies=float(flagged[truth].mean()),
      flagged_share_of_normal=float(flagged[~truth].mean()),
      scores={name: metrics.summarize(truth, values) for name, values in sorted(columns.items())})


def _write_outputs(config, rows, extremes, score, summary) -> None:
  """Writes every output file into a staging folder, then renames it into place."""
  try:
    with atomic_directory(config.output, '--output') as staging:
      with open(os.path.join(staging, CSV_FILE), 'w', newline='', encoding='utf-8') as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
          writer.writerow(dict(row, is_anomaly=int(row['is_anomaly'])))
      gallery.write_html(os.path.join(staging, HTML_FILE), extremes, score, _headline(summary))
      gallery.write_png(os.path.join(staging, PNG_FILE), extremes, score)
      with open(os.path.join(staging, SUMMARY_FILE), 'w', encoding='utf-8') as handle:
        json.dump(standard_json(summary), handle, indent=2, allow_nan=False)
  except OSError as error:
    raise write_error(config.output, error) from None


def _headline(summary: dict) -> str:
  return (f'{summary["scored"]} images scored ({summary["skipped"]} files skipped, '
          f'{summary["hidden"]} hidden files ignored); '
          f'{summary["flagged"]} called anomalies: {summary["score"]} > {summary["threshold"]:.6g}, '
          f'the threshold accepting {summary["normal_rate"]:g} of normal images.')


def _listed(names: list[str]) -> str:
  return ', '.join(names[:5]) + (f' and {len(names) - 5} more' if len(names) > 5 else '')


def _summary_lines(config: ScoreConfig, summary: dict) -> str:
  lines = [_headline(summary)]
  if summary['skipped_files']:
    lines.append(f'skipped (not readable images): {_listed(summary["skipped_files"])}')
  if summary['too_large']:
    lines.append(f'skipped (more than --max_megapixels={summary["max_megapixels"]:g}; raise it to '
                 'score them): ' + _listed([f'{item["path"]} ({item["megapixels"]:.1f} MP)'
                                           for item in summary['too_large']]))
  if summary['hidden']:
    lines.append(f'ignored {summary["hidden"]} hidden files (names starting with "."); name them '
                 'in a glob such as "photos/.*.png" to score them')
  labels = summary.get('labels')
  if labels:
    lines.append(f'--labels_from_folders={",".join(labels["anomalous_folders"])}: '
                 f'{labels["anomalies"]} anomalies, {labels["normal"]} normal; is_anomaly for '
                 f'{100 * labels["flagged_share_of_anomalies"]:.1f}% of anomalies and '
                 f'{100 * labels["flagged_share_of_normal"]:.1f}% of normal images')
    lines += [f'  {name:<13} AP {values["ap"]:6.2f}  AUROC {values["auroc"]:6.2f}'
              for name, values in labels['scores'].items()]
  lines.append(f'wrote {os.path.join(config.output, CSV_FILE)}, {HTML_FILE}, {PNG_FILE}, '
               f'{SUMMARY_FILE}')
  return '\n'.join(lines)
