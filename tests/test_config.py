"""TrainConfig declares every setting once: flags, sweep validation and config.json come from it."""

import dataclasses
import json
import math
import os

import pytest
from absl import flags

from tfanom.baselines import BaselineConfig
from tfanom.cli.flags import config_from_flags, define_flags, parse_flags
from tfanom.config import (RESUMABLE_DIFFERENCES, TrainConfig, check_settings, parse_setting,
                           setting, setting_kinds, setting_types, upgrade_saved)
from tfanom.defaults import DATASET_DEFAULTS
from tfanom.errors import UsageError
from tfanom.inference.evaluation import EvalConfig
from tfanom.inference.savedmodel import ExportConfig
from tfanom.inference.image_files import ScoreConfig
from tfanom.workdir import CONFIG_FILE, check_resumable, config_from_json


def parsed(config_class, argv):
  flag_values = flags.FlagValues()
  holders = define_flags(config_class, flag_values)
  flag_values(['prog', *argv])
  return config_from_flags(config_class, holders)


def test_every_field_is_a_flag_with_its_help_text_and_default():
  flag_values = flags.FlagValues()
  define_flags(TrainConfig, flag_values)
  for field in dataclasses.fields(TrainConfig):
    assert flag_values[field.name].help == field.metadata['help']
  assert parsed(TrainConfig, []) == TrainConfig()


def test_flags_parse_into_typed_fields():
  config = parsed(TrainConfig, ['--epochs=3', '--learning_rate=0.05', '--validation',
                                '--members=n1,n2', '--lr_decay_fractions=0.5,0.75',
                                '--rotation_weight=2'])
  assert (config.epochs, config.learning_rate, config.validation) == (3, 0.05, True)
  assert config.members == ('n1', 'n2') and config.lr_decay_fractions == (0.5, 0.75)
  assert config.aux_weight == 2.0  # the old name is an alias


@pytest.mark.parametrize('argv', [['--learning_rate=nan'], ['--aux_weight=inf'],
                                  ['--lr_decay_fractions=0.5,nan']])
def test_numeric_flags_refuse_nan_and_infinities(argv):
  with pytest.raises(flags.IllegalFlagValueError, match='must be a finite number'):
    parsed(TrainConfig, argv)


def test_a_new_setting_is_a_flag_a_sweep_setting_and_saved_without_more_code():
  extended = dataclasses.make_dataclass(
      'Extended', [('label_smoothing', float, setting(0.0, 'Label smoothing.'))],
      bases=(TrainConfig,), frozen=True)
  config = parsed(extended, ['--label_smoothing=0.2'])
  assert config.label_smoothing == 0.2
  assert setting_kinds(extended)['label_smoothing'] == (float, False)
  assert json.loads(json.dumps(config.to_dict()))['label_smoothing'] == 0.2


def test_parse_setting_types_values_as_a_command_line_would():
  assert parse_setting('epochs', '5') == 5
  assert parse_setting('validation', 'true') is True
  assert parse_setting('members', 'n1,n2') == ('n1', 'n2')
  assert parse_setting('data_dir', '/data') == '/data'
  with pytest.raises(UsageError, match='^--epochs=five must be an integer$'):
    parse_setting('epochs', 'five')
  with pytest.raises(UsageError, match='^--learning_rate=nan must be a finite number$'):
    parse_setting('learning_rate', 'nan')
  with pytest.raises(UsageError, match='^--depth=11 is not a Wide ResNet depth'):
    parse_setting('depth', '11')
  with pytest.raises(UsageError, match='epoch is not a setting'):
    parse_setting('epoch', '5')


def test_resumable_settings_are_those_that_do_not_change_a_result():
  assert RESUMABLE_DIFFERENCES == {'workdir', 'data_dir', 'cache_dir', 'steps_per_loop',
                                   'strategy', 'eval_batch_size', 'eval_every',
                                   'checkpoint_every_steps', 'deterministic', 'xla'}
  assert upgrade_saved({'rotation_weight': 1.0}) == {
      'aux_weight': 1.0, 'crop_fill': 'zeros', 'weight_decay_scope': 'kernels',
      'aux_decays_trunk': False}


def test_the_fidelity_switches_default_to_the_official_code_but_old_runs_keep_theirs(tmp_path):
  wide = TrainConfig().resolved()
  assert (wide.crop_fill, wide.weight_decay_scope, wide.aux_decays_trunk) == ('reflect', 'all',
                                                                              True)
  fast = TrainConfig(preset='fast').resolved()
  assert (fast.crop_fill, fast.weight_decay_scope, fast.aux_decays_trunk) == ('reflect', 'all',
                                                                              True)
  # A run saved before the switches existed was trained with zero-filled crops, decay on kernels
  # and the trunk decayed once: it is read so, and resuming it under the new defaults is refused.
  saved = wide.to_dict()
  for name in ('crop_fill', 'weight_decay_scope', 'aux_decays_trunk'):
    del saved[name]
  assert config_from_json(json.dumps(saved)).crop_fill == 'zeros'
  (tmp_path / CONFIG_FILE).write_text(json.dumps(saved))
  with pytest.raises(UsageError, match="crop_fill='zeros' there, 'reflect' now"):
    check_resumable(str(tmp_path), wide)
  check_resumable(str(tmp_path), dataclasses.replace(
      wide, crop_fill='zeros', weight_decay_scope='kernels', aux_decays_trunk=False))


def test_settings_the_dataset_ignores_are_listed():
  assert TrainConfig(dataset='digits', data_dir='/data', image_size=64,
                     skip_corrupt=True).ignored_settings() == ['data_dir', 'image_size',
                                                               'skip_corrupt']
  assert TrainConfig(dataset='cifar10', data_dir='/data', cache_dir='/c',
                     skip_corrupt=True).ignored_settings() == ['skip_corrupt']
  assert TrainConfig(dataset='digits', cache_dir='/c').ignored_settings() == ['cache_dir']
  assert TrainConfig(dataset='folder', data_dir='/d', image_size=64).ignored_settings() == []
  assert TrainConfig(dataset='digits').resolved().ignored_settings() == []


CONFIGS = (TrainConfig, EvalConfig, ExportConfig, ScoreConfig, BaselineConfig)
# Fields any value of their type suits: names of classes, paths and switches.
FREE_FIELDS = {'holdout', 'data_dir', 'cache_dir', 'workdir', 'members', 'skip_corrupt',
               'validation', 'aux_decays_trunk', 'deterministic', 'xla'}


def bad_values(field, kind) -> list:
  """Values of `field` its declaration refuses: of another type, outside its choices, bounds or
  rule, each written from the declaration itself."""
  limits = field.metadata
  wrong_type = {str: 7, int: 2.5, float: 'nan', bool: 'yes'}[kind.of]
  bad = [(wrong_type,) if kind.is_list else wrong_type]
  if kind.of is int:
    bad.append('64')  # a number in a string is not an int either
  if kind.of is float:
    bad.append(math.nan)
  if limits['choices'] is not None:
    bad.append('bogus')
  step = 1 if kind.of is int else 0.5
  for name, value in (('minimum', -step), ('above', 0), ('maximum', step), ('below', 0)):
    if limits[name] is not None:
      bad.append(limits[name] + value)
  if field.name == 'depth':
    bad += [11, 4]
  if field.name == 'lr_decay_fractions':
    bad += [(0.9, 0.1), (0.5, 0.5)]
  return [(value,) if kind.is_list and not isinstance(value, tuple) else value for value in bad]


@pytest.mark.parametrize('config_class', CONFIGS, ids=lambda c: c.__name__)
def test_every_bad_value_of_every_field_is_refused_in_one_line(config_class):
  required = dict(workdir='w', export_dir='e', images='i', output='o')
  base = {name: value for name, value in required.items()
          if name in setting_types(config_class)}
  checked = 0
  for field in dataclasses.fields(config_class):
    kind = setting_types(config_class)[field.name]
    limits = [name for name in ('choices', 'minimum', 'maximum', 'above', 'below', 'rule')
              if field.metadata[name] is not None]
    if config_class is TrainConfig:
      # Every enum and range of a run is declared, so that it is refused before any data loads.
      assert bool(limits) == (field.name not in FREE_FIELDS), field.name
    for value in bad_values(field, kind):
      with pytest.raises(UsageError) as raised:
        # TrainConfig refuses when it is made; the others when checked, as their commands do.
        check_settings(config_class(**{**base, field.name: value}))
      message = str(raised.value)
      assert message.startswith(f'--{field.name}=') and '\n' not in message, message
      checked += 1
  assert checked > len(dataclasses.fields(config_class))  # a wrong type of each, and more


def test_the_messages_say_what_is_allowed():
  for overrides, message in [
      (dict(aux='bogus'), '--aux=bogus is unknown: choose one of rotation, cpc, none'),
      (dict(stem=''), '--stem= is unknown: choose one of cifar, imagenet_maxpool, '
                      'imagenet_avgpool'),
      (dict(depth=11), '--depth=11 is not a Wide ResNet depth: use 6n+4 with n >= 1 (10, 16, '
                       '22, 28, ...)'),
      (dict(width=0), '--width=0 must be a positive integer'),
      (dict(dropout=2.0), '--dropout=2.0 must be in [0, 1)'),
      (dict(learning_rate=math.nan), '--learning_rate=nan must be a finite number'),
      (dict(epochs=2.5), '--epochs=2.5 must be an integer'),
      (dict(batch_size='64'), "--batch_size='64' must be an integer"),
      (dict(seed=-1), '--seed=-1 must be in 0..4294967295'),
      (dict(odin_temperature=0.0), '--odin_temperature=0.0 must be positive')]:
    with pytest.raises(UsageError) as raised:
      TrainConfig(**overrides)
    assert str(raised.value) == message


def test_deterministic_xla_is_refused_on_networks_that_max_pool():
  with pytest.raises(UsageError, match=r'^--deterministic with --xla cannot train '
                     r'--network=wide_resnet --stem=imagenet_maxpool: XLA has no deterministic '
                     'max-pooling gradient; drop one of the two$'):
    TrainConfig(stem='imagenet_maxpool', deterministic=True, xla=True).resolved()
  TrainConfig(stem='imagenet_maxpool', xla=True).resolved()
  TrainConfig(deterministic=True, xla=True).resolved()


def test_a_crop_larger_than_the_image_is_refused():
  with pytest.raises(UsageError, match=r'^--crop_size=64 is larger than --image_size=32: crops are '
                     'taken from the decoded images$'):
    TrainConfig(dataset='folder', data_dir='/d', image_size=32, crop_size=64).resolved()


@pytest.mark.parametrize('overrides,message', [
    (dict(lr_decay_factor=-1.0), r'--lr_decay_factor=-1.0 must be in \(0, 1\]'),
    (dict(lr_decay_factor=0.0), r'--lr_decay_factor=0.0 must be in \(0, 1\]'),
    (dict(lr_decay_fractions=(0.5, 2.0)), 'must each lie strictly between 0 and 1'),
    (dict(lr_decay_fractions=(0.0, 0.5)), 'must each lie strictly between 0 and 1'),
    (dict(lr_decay_fractions=(0.9, 0.1)), '--lr_decay_fractions=0.9,0.1 must be increasing'),
    (dict(lr_decay_fractions=(0.5, 0.5)), 'must be increasing')])
def test_nonsense_schedules_are_refused(overrides, message):
  with pytest.raises(UsageError, match=message):
    TrainConfig(**overrides)


def test_sensible_schedules_are_accepted():
  for overrides in (dict(lr_decay_fractions=()), dict(lr_decay_fractions=(0.5,)),
                    dict(lr_decay_fractions=(0.25, 0.5, 0.75), lr_decay_factor=1.0)):
    assert TrainConfig(**overrides).resolved().lr_decay_fractions == overrides[
        'lr_decay_fractions']


def test_resolved_defaults_are_those_of_before_the_checks():
  """Every dataset, auxiliary task and preset resolves to what it did before the settings were
  declared with their allowed values (captured from that code: the first entry in full, the
  others as their differences from it)."""
  with open(os.path.join(os.path.dirname(__file__), 'resolved_configs.json')) as handle:
    expected = json.load(handle)
  base = expected['digits|rotation|None']
  cases = {(dataset, aux, preset) for dataset in DATASET_DEFAULTS for aux in ('rotation', 'cpc',
                                                                             'none')
           for preset in ('None', 'fast') if not (preset == 'fast' and aux == 'cpc')}
  assert {tuple(key.split('|')) for key in expected} == cases
  for key, differences in expected.items():
    dataset, aux, preset = key.split('|')
    members = ('n01440764', 'n01443537') if dataset == 'imagenet_subset' else ()
    config = TrainConfig(dataset=dataset, aux=aux, preset=None if preset == 'None' else preset,
                         members=members).resolved()
    assert json.loads(json.dumps(config.to_dict())) == {**base, **differences}, key


@pytest.mark.parametrize('config_class,argv,message', [
    (TrainConfig, ['--learning_rate=nan'], '--learning_rate=nan must be a finite number'),
    (TrainConfig, ['--dropout=nan'], '--dropout=nan must be a finite number'),
    (TrainConfig, ['--epochs=1e3'], '--epochs=1e3 must be an integer'),
    (TrainConfig, ['--depth=11'], '--depth=11 is not a Wide ResNet depth'),
    (TrainConfig, ['--lr_decay_fractions=0.5,2.0'],
     '--lr_decay_fractions=0.5,2.0 must each lie strictly between 0 and 1'),
    (TrainConfig, ['--validation=maybe'], '--validation=maybe must be true or false'),
    (TrainConfig, ['--epoch=3'], "Unknown command line flag 'epoch'. Did you mean: epochs ?"),
    (TrainConfig, ['--bogus=3'], "Unknown command line flag 'bogus': see --helpshort"),
    (ScoreConfig, ['--normal_rate=nan'], '--normal_rate=nan must be a finite number'),
    (ExportConfig, ['--score=nope'], '--score=nope is unknown: choose one of msp'),
    (EvalConfig, ['--knn_k=0'], '--knn_k=0 must be a positive integer'),
    (BaselineConfig, ['--method=histogram'], '--method=histogram is unknown')])
def test_a_bad_flag_of_any_command_is_one_line_and_exit_2(config_class, argv, message, capsys):
  flag_values = flags.FlagValues()
  define_flags(config_class, flag_values)
  with pytest.raises(SystemExit) as exited:
    parse_flags('tfanom.command', ['prog', *argv], flag_values)
  assert exited.value.code == 2
  error = capsys.readouterr().err
  assert error.startswith(f'tfanom.command: error: {message}') and error.count('\n') == 1, error
