"""The SavedModel export: signatures that match the live model and tfanom.evaluate in a fresh process,
calibrated thresholds, and bad input."""

import contextlib
import json
import os
import pathlib
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf

from scipy import stats
from tensorflow.python.tools import saved_model_utils

from tfanom.anomaly import SCORES
from tfanom.data.pipeline import center_crop
from tfanom.data.holdout import relabel
from tfanom.data.sources import load_digits
from tfanom.inference import savedmodel
from tfanom.inference.calibration import NORMAL_RATES
from tfanom.inference.scorer import ScoringModule
from tfanom.inference.restore import load_run
from tfanom.errors import UsageError
from tfanom.io import OUTPUT_MARKER
from tfanom.inference.evaluation import EvalConfig, evaluate
from tfanom.inference.image_files import ScoreConfig, score_files
from tfanom.workdir import CHECKPOINT_DIR, RESULTS_FILE, locked

from tests.helpers import ROOT, python_command

# A forward pass gives every score but ODIN's (the fixture's model has a rotation head).
SERVED_SCORES = tuple(name for name in SCORES if name != 'odin')
SERVING_OUTPUTS = ('probabilities', 'class_id', 'class_name', 'anomaly_score', 'is_anomaly',
                   *(f'{name}_score' for name in SERVED_SCORES))

# Runs in a fresh interpreter: loads the export, calls both signatures on the images and on a
# TF Serving REST body, and saves what came back.
LOAD_AND_PREDICT = r'''
import json, sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, sys.argv[4])
from tests.test_export import rest_predict
export_dir, images_path, output_dir = sys.argv[1:4]
loaded = tf.saved_model.load(export_dir)
images = np.load(images_path)
outputs = {name: value.numpy() for name, value in
           loaded.signatures['serving_default'](images=tf.constant(images)).items()}
# Both signatures answer is_anomaly: ODIN's is kept as odin_is_anomaly.
outputs.update({('odin_is_anomaly' if name == 'is_anomaly' else name): value.numpy() for
                name, value in loaded.signatures['odin'](images=tf.constant(images)).items()})
np.savez(f'{output_dir}/outputs.npz', **outputs)
with open(f'{output_dir}/request.json') as handle:
  body = handle.read()
for name in ('serving_default', 'odin'):
  with open(f'{output_dir}/response_{name}.json', 'w') as handle:
    handle.write(rest_predict(loaded.signatures[name], body))
'''

# The export's default score for digits_export, which trains a rotation head.
ROTATION_DEFAULT = 'rotpred'


def rest_predict(signature, body: str) -> str:
  """What TF Serving's REST predict endpoint answers to `body`, in the row ("instances") format.

  The instances of the one input become one tensor of the input's dtype; each example's outputs
  come back as an object, or as a bare value when the signature has a single output.
  """
  (name, spec), = signature.structured_input_signature[1].items()
  images = np.asarray(json.loads(body)['instances'], spec.dtype.as_numpy_dtype)
  outputs = {key: value.numpy() for key, value in signature(**{name: images}).items()}

  def plain(value):
    return value.decode() if isinstance(value, bytes) else value.tolist()

  rows = [{key: plain(value[i]) for key, value in sorted(outputs.items())}
          for i in range(len(images))]
  if len(outputs) == 1:
    rows = [next(iter(row.values())) for row in rows]
  return json.dumps({'predictions': rows})


@pytest.fixture(scope='module')
def exported(digits_export, tmp_path_factory):
  """A digits run with a validation split (which calibrates the export), exported by the CLI;
  a copy of the run, which the tests evaluate."""
  root = tmp_path_factory.mktemp('export')
  workdir, export_dir = root / 'run', digits_export['export_dir']
  shutil.copytree(digits_export['workdir'], workdir)
  run = load_run(str(workdir))
  temperature, epsilon = run.config.odin_temperature, run.config.odin_epsilon
  detector = savedmodel.build_detector(
      run, savedmodel.ExportConfig(workdir=str(workdir), export_dir=str(export_dir)), temperature,
      epsilon, log=lambda line: None)
  live = ScoringModule(run, temperature, epsilon, detector)
  return dict(root=root, workdir=workdir, export_dir=export_dir, stdout=digits_export['stdout'],
              run=run, live=live, detector=detector)


def test_export_cli_reports_the_export(exported):
  assert f'to {exported["export_dir"]}' in exported['stdout']
  assert f'is_anomaly: {ROTATION_DEFAULT} > ' in exported['stdout']
  assert 'known-class images of the validation split' in exported['stdout']
  assert (exported['export_dir'] / 'saved_model.pb').exists()
  leftovers = [p.name for p in exported['export_dir'].parent.iterdir() if p.name != '1']
  assert leftovers == []


@pytest.fixture(scope='module')
def served(exported, tmp_path_factory):
  """Both signatures' outputs on every evaluation image, and their REST answers to a request of
  the first three, from the SavedModel loaded in a fresh Python process."""
  directory = tmp_path_factory.mktemp('served')
  images = exported['run'].split.evaluation.images
  np.save(directory / 'images.npy', images)
  (directory / 'request.json').write_text(json.dumps({'instances': images[:3].tolist()}))
  result = python_command('-c', LOAD_AND_PREDICT, str(exported['export_dir']),
                          str(directory / 'images.npy'), str(directory), str(ROOT))
  assert result.returncode == 0, result.stderr
  with np.load(directory / 'outputs.npz', allow_pickle=True) as outputs:
    arrays = {name: outputs[name] for name in outputs.files}
  responses = {name: json.loads((directory / f'response_{name}.json').read_text())
               for name in ('serving_default', 'odin')}
  return dict(images=images, outputs=arrays, responses=responses)


def test_saved_model_in_a_fresh_process_matches_the_live_model(exported, served):
  images = served['images']  # known classes and anomalies alike, in one batch
  live = exported['live']
  expected = {key: value.numpy() for key, value in live.serve(images).items()}
  odin = live.odin(images)
  expected.update(odin_score=odin['odin_score'].numpy(),
                  odin_is_anomaly=odin['is_anomaly'].numpy())
  saved = served['outputs']
  assert sorted(saved) == sorted(expected)
  for key, value in expected.items():
    if value.dtype == object:
      np.testing.assert_array_equal(saved[key], value)
    else:
      np.testing.assert_allclose(saved[key], value, rtol=1e-5, atol=1e-6, err_msg=key)

  response = served['responses']['serving_default']
  assert len(response['predictions']) == 3
  for i, prediction in enumerate(response['predictions']):
    assert sorted(prediction) == sorted(SERVING_OUTPUTS)
    assert prediction['class_name'] == expected['class_name'][i].decode()
    assert prediction['class_id'] == expected['class_id'][i]
    np.testing.assert_allclose(prediction['probabilities'], expected['probabilities'][i],
                               rtol=1e-5)
    np.testing.assert_allclose(prediction['msp_score'], expected['msp_score'][i], rtol=1e-5)
  odin_response = served['responses']['odin']
  for i, prediction in enumerate(odin_response['predictions']):
    assert sorted(prediction) == ['is_anomaly', 'odin_score']
    np.testing.assert_allclose(prediction['odin_score'], expected['odin_score'][i], rtol=1e-5)
    assert prediction['is_anomaly'] == expected['odin_is_anomaly'][i]


@pytest.fixture(scope='module')
def evaluated(exported):
  """tfanom.evaluate of the run's checkpoint: its report and scores.npz."""
  report = evaluate(EvalConfig(workdir=str(exported['workdir'])), log=lambda line: None)
  with np.load(exported['workdir'] / 'scores.npz') as archive:
    return dict(report=report, arrays={name: archive[name] for name in archive.files})


def test_served_scores_equal_evaluate_in_a_fresh_process(exported, served, evaluated):
  outputs, arrays = served['outputs'], evaluated['arrays']
  # Features of one big batch and of evaluation-sized batches differ by float32 rounding
  # (~1e-7 relative); RMDS subtracts two distances of ~100, so its error is absolute, at that
  # relative size of the distances.
  scale = dict(rmds=np.abs(arrays['mahalanobis']).max())
  for name in SCORES:
    np.testing.assert_allclose(outputs[f'{name}_score'], arrays[name], rtol=2e-5,
                               atol=2e-5 * max(1.0, scale.get(name, 1.0) * 1e-2), err_msg=name)
  np.testing.assert_array_equal(outputs['class_id'], arrays['prediction'])
  np.testing.assert_array_equal(outputs['anomaly_score'], outputs[f'{ROTATION_DEFAULT}_score'])
  threshold = exported['detector'].threshold(ROTATION_DEFAULT)
  np.testing.assert_array_equal(outputs['is_anomaly'],
                                outputs['anomaly_score'] > np.float32(threshold))
  assert 0 < outputs['is_anomaly'].sum() < len(served['images'])


def test_thresholds_accept_the_normal_rate_of_new_normal_images(exported, loaded):
  """Calibrated on the validation split's normal images, tested on the test split's."""
  calibration = json.loads(loaded.calibration_json.numpy())
  split = exported['run'].split
  assert calibration['size'] == int((~split.is_anomaly).sum())
  assert calibration['rates'] == [0.9, 0.95, 0.99]
  source = load_digits().test
  normal = relabel(source.labels, split.holdout_index) >= 0
  served = loaded.serve(tf.constant(source.images[normal]))
  scores = served[f'{ROTATION_DEFAULT}_score'].numpy()
  n, m = calibration['size'], len(scores)
  for rate in NORMAL_RATES:
    threshold = calibration['thresholds'][ROTATION_DEFAULT][calibration['rates'].index(rate)]
    accepted = int((scores <= np.float32(threshold)).sum())
    # Split-conformal: a new score falls at or below the k-th of n calibration scores with a
    # Beta(k, n + 1 - k) probability, so the accepted count is beta-binomial.
    rank = min(int(np.ceil(rate * (n + 1))), n)
    low, high = stats.betabinom.interval(0.99, m, rank, n + 1 - rank)
    assert low <= accepted <= high, (rate, accepted, m, low, high)
    met = calibration['rates_met'][ROTATION_DEFAULT][calibration['rates'].index(rate)]
    assert met >= rate


def test_export_refuses_bad_detector_settings(exported, tmp_path):
  workdir = str(exported['workdir'])
  for overrides, message in [(dict(normal_rate=1.0), 'strictly between 0 and 1'),
                             (dict(normal_rate=0.0), 'strictly between 0 and 1'),
                             (dict(score='nope'), 'unknown'),
                             (dict(knn_bank_size=-1), 'must be >= 0')]:
    config = savedmodel.ExportConfig(workdir=workdir, export_dir=str(tmp_path / '1'), **overrides)
    with pytest.raises(UsageError, match=message):
      savedmodel.export_run(config)
  assert list(tmp_path.iterdir()) == []


def test_a_knn_bank_subsample_is_stored_at_its_size(exported):
  statistics = exported['detector'].statistics
  smaller = savedmodel.subsample_bank(statistics, 100, seed=0)
  assert smaller.bank.shape == (100, statistics.bank.shape[1])
  rows = {row.tobytes() for row in statistics.bank}
  assert all(row.tobytes() in rows for row in smaller.bank)
  assert savedmodel.subsample_bank(statistics, 0, seed=0) is statistics


def test_scores_are_oriented_and_consistent(exported):
  images = exported['run'].split.evaluation.images[:16]
  outputs = exported['live'].serve(images)
  probabilities = outputs['probabilities'].numpy()
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(outputs['msp_score'], -probabilities.max(-1), rtol=1e-6)
  np.testing.assert_array_equal(outputs['class_id'], probabilities.argmax(-1))
  logits = exported['run'].model(center_crop(images, exported['run'].config.crop_size) /
                                 255.0).numpy()
  np.testing.assert_allclose(outputs['max_logit_score'], -logits.max(-1), rtol=1e-5)


def test_the_serve_meta_graph_lists_both_signatures(exported):
  # What `saved_model_cli show --all` prints and TF Serving reads: the SavedModel's "serve" meta
  # graph, read here in process rather than by starting the tool (a TensorFlow import, ~6 s CPU).
  signatures = saved_model_utils.get_meta_graph_def(str(exported['export_dir']),
                                                    'serve').signature_def
  assert sorted(signatures) == ['__saved_model_init_op', 'odin', 'serving_default']
  for name, outputs in [('serving_default', SERVING_OUTPUTS), ('odin', ('odin_score',
                                                                        'is_anomaly'))]:
    (images,) = signatures[name].inputs.values()
    assert images.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [-1, 32, 32, 1]
    assert sorted(signatures[name].outputs) == sorted(outputs)


@pytest.fixture(scope='module')
def loaded(exported):
  return tf.saved_model.load(str(exported['export_dir']))


def test_metadata_is_stored(exported, loaded):
  split = exported['run'].split
  assert [n.decode() for n in loaded.class_names.numpy()] == list(split.known_class_names)
  assert loaded.holdout_name.numpy().decode() == split.holdout_name
  assert int(loaded.holdout_index.numpy()) == split.holdout_index
  assert list(loaded.image_shape.numpy()) == [32, 32, 1]
  assert json.loads(loaded.config_json.numpy())['depth'] == 10


@pytest.mark.parametrize('signature', ['serving_default', 'odin'])
def test_signatures_name_the_expected_images(exported, loaded, signature):
  function = loaded.signatures[signature]
  images = exported['run'].split.evaluation.images[:2]
  expected = r'images must be uint8 pixels of shape \[batch, 32, 32, 1\]; got shape'
  with pytest.raises(tf.errors.InvalidArgumentError, match=expected + r'.*\[2 28 28 1\]'):
    function(images=tf.constant(images[:, :28, :28]))
  with pytest.raises(tf.errors.InvalidArgumentError, match=expected + r'.*\[32 32 1\]'):
    function(images=tf.constant(images[0]))
  with pytest.raises(tf.errors.InvalidArgumentError, match='expected to be a uint8 tensor'):
    function(images=tf.constant(images, tf.float32))


def test_evaluating_the_export_matches_the_checkpoint(exported, evaluated):
  from_export = evaluate(EvalConfig(workdir=str(exported['root'] / 'eval_export'),
                                    export_dir=str(exported['export_dir'])), log=lambda line: None)
  from_checkpoint = evaluated['report']
  assert list(from_export['scores']) == list(from_checkpoint['scores'])
  assert 'rotation' in from_export['scores']
  for name, values in from_export['scores'].items():
    for metric, value in values.items():
      assert value == pytest.approx(from_checkpoint['scores'][name][metric], abs=1e-6), name


def test_an_export_is_never_evaluated_into_a_training_run(exported):
  workdir = exported['workdir']
  before = {path.name: path.read_bytes() for path in workdir.iterdir() if path.is_file()}
  with pytest.raises(UsageError, match=f'--workdir={workdir} is a training run, whose eval.json '
                     'and scores.npz belong to its own checkpoint: pass another --workdir'):
    evaluate(EvalConfig(workdir=str(workdir), export_dir=str(exported['export_dir'])),
             log=lambda line: None)
  assert {path.name: path.read_bytes() for path in workdir.iterdir() if path.is_file()} == before


@pytest.mark.parametrize('damage', ['junk saved_model.pb', 'truncated variables'])
def test_a_damaged_export_is_one_line(exported, tmp_path, damage):
  export_dir = tmp_path / 'models' / '1'
  shutil.copytree(exported['export_dir'], export_dir)
  if damage == 'junk saved_model.pb':
    (export_dir / 'saved_model.pb').write_bytes(b'\x08\x01junk' * 10)
  else:
    data = export_dir / 'variables' / 'variables.data-00000-of-00001'
    data.write_bytes(data.read_bytes()[:len(data.read_bytes()) // 3])
  message = (f'--export_dir={export_dir} is damaged .*: export it again with python -m '
             'tfanom.export --workdir=RUN --export_dir=... --overwrite')
  with pytest.raises(UsageError, match=message):
    savedmodel.load_export(str(export_dir))
  if damage == 'junk saved_model.pb':
    # Both commands read an export through load_export, so one damage shows they report its line
    # (each load of the truncated export, which fails only once its functions are rebuilt, took
    # about 1 s of CPU).
    with pytest.raises(UsageError, match=message):
      evaluate(EvalConfig(workdir=str(tmp_path / 'out'), export_dir=str(export_dir)),
               log=lambda line: None)
    with pytest.raises(UsageError, match=message):
      score_files(ScoreConfig(export_dir=str(export_dir), images=str(export_dir),
                              output=str(tmp_path / 'out')), log=lambda line: None)
    assert not (tmp_path / 'out').exists()


def test_refuses_a_folder_that_is_not_a_version(exported):
  with pytest.raises(UsageError, match='numbered version folder'):
    savedmodel.export(exported['run'], str(exported['root'] / 'models' / 'digits'))


def fake_save(module, path, signatures):
  """Stands in for tf.saved_model.save where only the folder handling is under test."""
  assert isinstance(module, UntracedModule)
  assert sorted(signatures) == ['odin', 'serving_default']
  pathlib.Path(path, 'saved_model.pb').write_text('new export')


class UntracedModule:
  """Stands in for ScoringModule where only the folder handling is under test: tracing its two
  signatures took about 1 s of CPU an export."""

  def __init__(self, *args):
    self.serve = self.odin = types.SimpleNamespace(get_concrete_function=lambda: None)


def test_refuses_a_non_empty_folder_unless_overwriting(exported, tmp_path, monkeypatch):
  monkeypatch.setattr(savedmodel, 'ScoringModule', UntracedModule)
  monkeypatch.setattr(tf.saved_model, 'save', fake_save)
  export_dir = tmp_path / '7'
  export_dir.mkdir()
  (export_dir / 'keep.txt').write_text('previous export')
  with pytest.raises(UsageError, match='exists and is not empty.*--overwrite'):
    savedmodel.export(exported['run'], str(export_dir))
  # --overwrite replaces only what tfanom wrote.
  with pytest.raises(UsageError, match=r"holds 1 file\(s\) tfanom did not write \('keep.txt'\)"):
    savedmodel.export(exported['run'], str(export_dir), overwrite=True)
  assert (export_dir / 'keep.txt').read_text() == 'previous export'
  (export_dir / 'keep.txt').unlink()
  savedmodel.export(exported['run'], str(export_dir))
  savedmodel.export(exported['run'], str(export_dir), overwrite=True)
  assert sorted(p.name for p in export_dir.iterdir()) == [OUTPUT_MARKER, 'saved_model.pb']
  assert [p.name for p in tmp_path.iterdir()] == ['7']


def test_a_failed_export_leaves_nothing_behind(exported, tmp_path, monkeypatch):
  def failing_save(module, path, signatures):
    pathlib.Path(path, 'saved_model.pb').write_text('half')
    raise OSError('disk full')

  monkeypatch.setattr(savedmodel, 'ScoringModule', UntracedModule)
  monkeypatch.setattr(tf.saved_model, 'save', failing_save)
  with pytest.raises(UsageError, match=r'cannot write .*/1: disk full; check that its folder'):
    savedmodel.export(exported['run'], str(tmp_path / '1'))
  assert list(tmp_path.iterdir()) == []
  previous = tmp_path / '2'
  with monkeypatch.context() as patched:
    patched.setattr(tf.saved_model, 'save', fake_save)
    savedmodel.export(exported['run'], str(previous))
  (previous / 'saved_model.pb').write_text('previous export')
  with pytest.raises(UsageError, match='disk full'):
    savedmodel.export(exported['run'], str(previous), overwrite=True)
  assert [p.name for p in tmp_path.iterdir()] == ['2']
  assert (previous / 'saved_model.pb').read_text() == 'previous export'
  (tmp_path / 'taken').write_text('a file')
  with pytest.raises(UsageError, match='cannot write .*taken/models/1'):
    savedmodel.export(exported['run'], str(tmp_path / 'taken' / 'models' / '1'))


class Stop(Exception):
  """Ends export_run once it has named the checkpoint it uses."""


def stop(*args, **kwargs):
  raise Stop()


@pytest.mark.parametrize('state', ['no results.json', 'locked by its trainer'])
def test_evaluate_and_export_name_the_checkpoint_of_an_unfinished_run(exported, tmp_path,
                                                                      monkeypatch, state):
  workdir = tmp_path / 'run'
  shutil.copytree(exported['workdir'], workdir)
  checkpoint = pathlib.Path(tf.train.latest_checkpoint(str(workdir / CHECKPOINT_DIR))).name
  if state == 'no results.json':
    (workdir / RESULTS_FILE).unlink()
    expected = (f'warning: --workdir={workdir} has no results.json: its training has not '
                f'finished; using its latest checkpoint so far, {checkpoint}')
  else:
    expected = (f'warning: --workdir={workdir} is being trained by another process (pid '
                f'{os.getpid()}); using its latest checkpoint so far, {checkpoint}')
  with contextlib.ExitStack() as stack:
    if state == 'locked by its trainer':
      stack.enter_context(locked(str(workdir)))  # another open file description: as a trainer's
    lines = []
    evaluate(EvalConfig(workdir=str(workdir), scores=('msp',)), lines.append)
    assert lines[0] == expected
    lines = []
    monkeypatch.setattr(savedmodel, 'build_detector', stop)
    with pytest.raises(Stop):
      savedmodel.export_run(savedmodel.ExportConfig(workdir=str(workdir),
                                                    export_dir=str(tmp_path / 'models' / '1')),
                            lines.append)
    assert lines == [expected]
