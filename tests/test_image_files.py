"""`tfanom.score`: a folder of new images of mixed formats, sizes and channels, scored by an export."""

import base64
import csv
import functools
import html
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfanom.data.decoding import decode_files
from tfanom.data.holdout import relabel
from tfanom.errors import UsageError
from tfanom.inference import savedmodel, gallery, image_files
from tfanom.inference.restore import load_run
from tfanom.inference.image_files import ScoreConfig
from tfanom.io import OUTPUT_MARKER

from tests.helpers import HOLDOUT, own_lines, run_command_line


@pytest.fixture(scope='module', autouse=True)
def exports_loaded_once():
  """Each test scores with the same export several times; loading and tracing it again each time
  cost about 3 s of CPU per call. The cache holds SavedModels, which scoring does not change."""
  load = image_files.load_export
  image_files.load_export = functools.cache(load)
  yield
  image_files.load_export = load


@pytest.fixture(scope='module')
def exported(digits_export_without_aux, tmp_path_factory):
  return dict(digits_export_without_aux, root=tmp_path_factory.mktemp('score'),
              export_dir=str(digits_export_without_aux['export_dir']))


@pytest.fixture(scope='module')
def folder(exported, digits):
  """Known digits and held-out ones, as grey PNGs, RGB JPEGs of other sizes, RGBA PNGs, GIFs and
  BMPs, plus a corrupt JPEG and a text file."""
  root = exported['root'] / 'new'
  normal, anomalous = root / 'known', root / 'held_out'
  (normal / 'deeper').mkdir(parents=True)
  anomalous.mkdir()
  labels = relabel(digits.test.labels, HOLDOUT)
  known = np.flatnonzero(labels >= 0)[:40]
  held_out = np.flatnonzero(labels < 0)[:20]
  writers = [
      lambda pixels, path: Image.fromarray(pixels).save(f'{path}.png'),
      lambda pixels, path: Image.fromarray(pixels).convert('RGB').resize((48, 64)).save(
          f'{path}.jpg'),
      lambda pixels, path: Image.fromarray(pixels).convert('RGBA').save(f'{path}.png'),
      lambda pixels, path: Image.fromarray(pixels).convert('RGB').save(f'{path}.gif'),
      lambda pixels, path: Image.fromarray(pixels).convert('RGB').save(f'{path}.bmp')]
  for group, indices, directory in [('k', known, normal), ('h', held_out, anomalous)]:
    for n, index in enumerate(indices):
      place = normal / 'deeper' if group == 'k' and n % 2 else directory
      writers[n % len(writers)](digits.test.images[index][..., 0], place / f'{group}{n}')
  (normal / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  (root / 'README.txt').write_text('not an image')
  return dict(root=root, readable=len(known) + len(held_out), known=len(known),
              held_out=len(held_out))


def score(exported, folder, tmp_path, **overrides):
  # A gallery of one image a half unless the test looks at it: laying out the default 32 with
  # matplotlib took about 2 s of CPU, more than the rest of scoring 60 images.
  config = ScoreConfig(export_dir=exported['export_dir'], images=str(folder['root']),
                       output=str(tmp_path / 'out'), **dict(dict(gallery_size=1), **overrides))
  return image_files.score_files(config, log=lambda line: None)


@pytest.fixture(scope='module')
def scored(exported, folder, tmp_path_factory):
  """The folder scored once, with labels and a gallery of two a half: the summary and the output
  folder. Tests that need an earlier output copy it (`earlier_output`)."""
  root = tmp_path_factory.mktemp('scored')
  summary = score(exported, folder, root, labels_from_folders=('held_out',), gallery_size=2)
  return dict(summary=summary, out=root / 'out')


def earlier_output(scored, tmp_path):
  """tmp_path/out as an earlier tfanom.score left it."""
  shutil.copytree(scored['out'], tmp_path / 'out')
  return tmp_path / 'out'


def test_scores_every_readable_image_and_writes_the_gallery(scored, folder):
  summary, out = scored['summary'], scored['out']
  assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, 'gallery.html', 'gallery.png',
                                                   'scores.csv', 'summary.json']
  with open(out / 'scores.csv', newline='') as handle:
    rows = list(csv.DictReader(handle))
  assert len(rows) == folder['readable'] == summary['scored']
  columns = list(rows[0])
  assert columns[:3] == ['path', 'class_name', 'probability']
  assert columns[-2:] == ['anomaly_score', 'is_anomaly']
  assert {'msp_score', 'odin_score', 'rmds_score', 'knn_score', 'vim_score'} <= set(columns)
  assert 'rotation_score' not in columns  # an --aux=none model has no rotation head
  threshold = np.float32(summary['threshold'])
  for row in rows:
    assert row['anomaly_score'] == row['energy_score']  # the default without a rotation head
    assert row['is_anomaly'] == str(int(np.float32(float(row['anomaly_score'])) > threshold))
  assert summary['skipped'] == 2
  assert sorted(p.split('/')[-1] for p in summary['skipped_files']) == ['README.txt', 'broken.jpg']
  labels = summary['labels']
  assert (labels['anomalies'], labels['normal']) == (folder['held_out'], folder['known'])
  assert set(labels['scores']) >= {'msp', 'odin', 'energy'}
  # The gallery is a real image with both halves of the page.
  png = tf.io.decode_png(tf.io.read_file(str(out / 'gallery.png'))).numpy()
  assert png.shape[0] > 200 and png.shape[1] > 200 and png.std() > 10
  page = (out / 'gallery.html').read_text()
  assert page.count('<img') == 4 and 'most anomalous' in page and 'least anomalous' in page
  assert json.loads((out / 'summary.json').read_text())['scored'] == folder['readable']


def test_the_same_image_scores_alike_in_any_file_format(exported, folder, scored):
  """A grey PNG at the model size is read exactly; through RGB files the pixels stay close."""
  loaded = image_files.load_detector(exported['export_dir'])
  pixels = np.asarray(Image.open(next(folder['root'].glob('known/k0.png'))))[None, :, :, None]
  direct = loaded.serve(tf.constant(pixels))['msp_score'].numpy()[0]
  with open(scored['out'] / 'scores.csv', newline='') as handle:
    by_name = {row['path'].split('/')[-1]: row for row in csv.DictReader(handle)}
  assert float(by_name['k0.png']['msp_score']) == pytest.approx(direct, abs=1e-6)
  # That every readable file is scored, whatever its format, is checked by
  # test_scores_every_readable_image_and_writes_the_gallery.


def test_the_decision_can_be_asked_at_another_calibrated_rate(exported, folder, tmp_path):
  strict = score(exported, folder, tmp_path, normal_rate=0.99, score='msp')
  lenient = score(exported, folder, tmp_path, normal_rate=0.90, score='msp', overwrite=True)
  assert strict['threshold'] >= lenient['threshold']
  assert strict['flagged'] <= lenient['flagged']
  with pytest.raises(UsageError, match=r'--normal_rate=0.8 was not calibrated.*0.9, 0.95, 0.99'):
    score(exported, folder, tmp_path, normal_rate=0.8, overwrite=True)
  with pytest.raises(UsageError, match='--score=rotation is not served'):
    score(exported, folder, tmp_path, score='rotation', overwrite=True)


@pytest.mark.parametrize('images, message', [
    ('empty', 'holds no files'), ('nothing/*.png', 'holds no files'),
    ('missing', 'does not exist'), ('junk', 'none of its 1 files is a readable image')])
def test_no_images_is_one_line(exported, tmp_path, images, message):
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'nothing').mkdir()
  (tmp_path / 'junk').mkdir()
  (tmp_path / 'junk' / 'a.png').write_text('text')
  config = ScoreConfig(export_dir=exported['export_dir'], images=str(tmp_path / images),
                       output=str(tmp_path / 'out'))
  with pytest.raises(UsageError, match=message):
    image_files.score_files(config, log=lambda line: None)
  assert not (tmp_path / 'out').exists()


def test_bad_settings_and_an_old_export(exported, folder, tmp_path):
  with pytest.raises(UsageError, match='strictly between 0 and 1'):
    score(exported, folder, tmp_path, normal_rate=1.5)
  with pytest.raises(UsageError, match='no folder named cats'):
    score(exported, folder, tmp_path, labels_from_folders=('cats',))
  (tmp_path / 'out').mkdir()
  (tmp_path / 'out' / 'keep.txt').write_text('earlier')
  with pytest.raises(UsageError, match='exists and is not empty.*--overwrite'):
    score(exported, folder, tmp_path)
  # An export without a detector is what tfanom exported before thresholds existed.
  old = tmp_path / 'old' / '1'
  savedmodel.export(load_run(str(exported['workdir'])), str(old))
  with pytest.raises(UsageError, match='without calibrated thresholds.*export it again'):
    image_files.score_files(ScoreConfig(export_dir=str(old), images=str(folder['root']),
                                        output=str(tmp_path / 'o2')))


def test_export_refuses_a_rotation_score_without_a_rotation_head(exported, tmp_path):
  config = savedmodel.ExportConfig(workdir=str(exported['workdir']), export_dir=str(tmp_path / '1'),
                               score='rotpred')
  with pytest.raises(UsageError, match='--score=rotpred needs a rotation head.*--aux=none'):
    savedmodel.export_run(config, log=lambda line: None)
  assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_the_earlier_output(exported, folder, scored, tmp_path, monkeypatch):
  before = (earlier_output(scored, tmp_path) / 'scores.csv').read_bytes()

  def full_disk(*args):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(gallery, 'write_png', full_disk)
  with pytest.raises(UsageError, match='cannot write .*out: No space left on device'):
    score(exported, folder, tmp_path, overwrite=True, score='msp')
  assert (tmp_path / 'out' / 'scores.csv').read_bytes() == before
  assert [p.name for p in tmp_path.iterdir()] == ['out']


def test_the_command_line_exits_2_with_one_line(exported, tmp_path):
  (tmp_path / 'empty').mkdir()
  result = run_command_line('tfanom.score', f'--export_dir={exported["export_dir"]}',
                            f'--images={tmp_path / "empty"}', f'--output={tmp_path / "out"}')
  assert result.returncode == 2
  assert own_lines(result.stderr) == [
      f'tfanom.score: error: --images={tmp_path / "empty"} holds no files: give a folder of '
      'images or a glob that matches some']


def test_overwrite_never_deletes_the_images_or_files_tfanom_did_not_write(exported, folder,
                                                                          scored, tmp_path):
  photos = tmp_path / 'photos'
  shutil.copytree(folder['root'], photos)
  before = sorted(str(p) for p in photos.rglob('*'))
  with pytest.raises(UsageError, match=f'--output={photos} holds the input {photos}: choose '
                     'another folder'):
    image_files.score_files(ScoreConfig(export_dir=exported['export_dir'], images=str(photos),
                                        output=str(photos), overwrite=True))
  with pytest.raises(UsageError, match=r"--output=.*known holds \d+ file\(s\) tfanom did not "
                     "write"):
    image_files.score_files(ScoreConfig(export_dir=exported['export_dir'], images=str(photos),
                                        output=str(photos / 'known'), overwrite=True))
  assert sorted(str(p) for p in photos.rglob('*')) == before
  (earlier_output(scored, tmp_path) / 'notes.txt').write_text('mine')
  with pytest.raises(UsageError, match=r"holds 1 file\(s\) tfanom did not write \('notes.txt'\)"):
    score(exported, folder, tmp_path, overwrite=True)
  assert (tmp_path / 'out' / 'notes.txt').read_text() == 'mine'


def test_overwrite_never_replaces_the_current_folder(exported, folder, scored, tmp_path,
                                                     monkeypatch):
  earlier_output(scored, tmp_path)
  before = sorted(str(p) for p in tmp_path.rglob('*'))
  monkeypatch.chdir(tmp_path / 'out')
  for output in ('.', '..'):
    with pytest.raises(UsageError, match=rf'--output={re.escape(output)} holds the current '
                       'folder: choose a folder below it'):
      image_files.score_files(ScoreConfig(export_dir=str(exported['export_dir']),
                                          images=str(folder['root']), output=output,
                                          overwrite=True))
  assert sorted(str(p) for p in tmp_path.rglob('*')) == before


def test_awkward_files_are_named_and_skipped_and_loops_not_followed(exported, folder, tmp_path,
                                                                    monkeypatch):
  """A name that is not UTF-8, an image above --max_megapixels, a hidden file and two link loops:
  each readable image is scored once and every other file is accounted for."""
  photos = tmp_path / 'photos'
  (photos / 'trip').mkdir(parents=True)
  small = next(folder['root'].glob('known/k0.png'))
  shutil.copy(small, photos / 'a.png')
  shutil.copy(small, photos / 'trip' / 'b.png')
  shutil.copy(small, photos / '.hidden.png')
  bad_name = os.fsdecode(os.fsencode(str(photos)) + b'/caf\xe9.png')
  shutil.copy(small, bad_name)
  big = Image.new('RGB', (300, 200), 'white')
  big.save(photos / 'big.jpg')
  os.symlink('..', photos / 'trip' / 'up')
  os.symlink('.', photos / 'trip' / 'here')
  with Image.open(small) as image:
    limit = (image.width * image.height + 300 * 200) / 2 / 1e6
  decoded = []
  real = image_files.decode_files
  monkeypatch.setattr(image_files, 'decode_files',
                      lambda files, *args: (decoded.extend(files), real(files, *args))[1])
  lines = []
  for images in (str(photos), str(photos / '**' / '*')):
    summary = image_files.score_files(
        ScoreConfig(export_dir=exported['export_dir'], images=images,
                    output=str(tmp_path / 'out'), max_megapixels=limit, overwrite=True),
        log=lines.append)
    assert summary['scored'] == 2 and summary['hidden'] == 1 and summary['files'] == 4
    assert summary['skipped'] == 2
    assert summary['skipped_files'] == [repr(bad_name)]
    assert summary['too_large'] == [dict(path=str(photos / 'big.jpg'), megapixels=0.06)]
  assert decoded and str(photos / 'big.jpg') not in decoded  # skipped unread
  with open(tmp_path / 'out' / 'scores.csv', newline='', encoding='utf-8') as handle:
    assert [row['path'] for row in csv.DictReader(handle)] == [str(photos / 'a.png'),
                                                               str(photos / 'trip' / 'b.png')]
  report = lines[-1]
  assert '2 images scored (2 files skipped, 1 hidden files ignored)' in report
  assert f'skipped (not readable images): {bad_name!r}' in report
  assert (f'skipped (more than --max_megapixels={limit:g}; raise it to score them): '
          f'{photos / "big.jpg"} (0.1 MP)') in report
  assert 'ignored 1 hidden files' in report


def test_the_gallery_shows_the_crop_the_export_scored(exported, scored):
  """The shared export stores the 32x32 grey digits and scores their central 16x16 crops (as the
  ImageNet subsets store 256 and see 224): the folder's images, of several sizes and channels, are
  shown as that crop."""
  page = (scored['out'] / 'gallery.html').read_text()
  shown = re.findall(r'src="data:image/png;base64,([^"]+)" alt="([^"]+)"', page)
  assert len(shown) == 4
  loaded = image_files.load_detector(exported['export_dir'])
  size, _, channels = (int(d) for d in loaded.image_shape.numpy())
  crop = json.loads(loaded.config_json.numpy())['crop_size']
  assert (size, channels, crop) == (32, 1, 16)
  with open(scored['out'] / 'scores.csv', newline='') as handle:
    scores = {row['path']: float(row['msp_score']) for row in csv.DictReader(handle)}
  for encoded, path in shown:
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))
    # The file as decoding reads it at the stored 32x32 size, then its central 16x16 square ...
    stored = next(decode_files([html.unescape(path)], size, channels))[0][0]
    np.testing.assert_array_equal(pixels, stored[8:24, 8:24, 0])
    # ... of the very image the export scored.
    assert scores[html.unescape(path)] == pytest.approx(
        float(loaded.serve(tf.constant(stored[None]))['msp_score'][0]), abs=1e-6)
