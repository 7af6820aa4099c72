"""TrainConfig declares every setting once: flags, sweep validation and config.json come from it."""

import dataclasses
import json

import pytest
from absl import flags

from tfanom.cli.flags import config_from_flags, define_flags
from tfanom.config import (RESUMABLE_DIFFERENCES, TrainConfig, parse_setting, setting,
                           setting_kinds, upgrade_saved)
from tfanom.errors import UsageError
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
  with pytest.raises(flags.IllegalFlagValueError, match='finite'):
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
  with pytest.raises(UsageError, match='epochs=five: expected an integer'):
    parse_setting('epochs', 'five')
  with pytest.raises(UsageError, match='learning_rate=nan must be a finite number'):
    parse_setting('learning_rate', 'nan')
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
  assert TrainConfig(dataset='cifar10', data_dir='/data', cache_dir='/c').ignored_settings() == [
      'cache_dir']
  assert TrainConfig(dataset='folder', data_dir='/d', image_size=64).ignored_settings() == []
  assert TrainConfig(dataset='digits').resolved().ignored_settings() == []
