"""Flags generated from a config dataclass, so that each setting is declared once (in the config).

`define_flags(TrainConfig)` defines one absl flag per field, with the field's help text, type and
default; `config_from_flags(TrainConfig)` reads them back into a config. Numeric flags refuse NaN
and infinities when they are parsed.
"""

import dataclasses
import math

from absl import flags

from tfanom.config import setting_kinds

_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_bool}


def define_flags(config_class, skip=()) -> dict:
  """One flag per field of `config_class` (a dataclass of `tfanom.config.setting` fields) but
  those in `skip`. Returns the flag holders by field name."""
  kinds = setting_kinds(config_class)
  holders = {}
  for field in dataclasses.fields(config_class):
    if field.name in skip:
      continue
    kind, is_list = kinds[field.name]
    help_text = field.metadata['help']
    if is_list:
      default = ','.join(str(v) for v in field.default) if field.default else None
      holder = flags.DEFINE_list(field.name, default, help_text)
      if kind is float:
        flags.register_validator(field.name, _finite_list, f'--{field.name} takes finite numbers')
    else:
      holder = _DEFINE[kind](field.name, field.default, help_text,
                             required=field.metadata.get('required', False))
      if kind is float:
        flags.register_validator(field.name, _finite, f'--{field.name} must be a finite number')
    for alias in field.metadata.get('aliases', ()):
      flags.DEFINE_alias(alias, field.name)
    holders[field.name] = (holder, kind, is_list)
  return holders


def config_from_flags(config_class, holders: dict):
  """A `config_class` holding the parsed values of the flags `define_flags` returned."""
  values = {}
  for name, (holder, kind, is_list) in holders.items():
    value = holder.value
    if is_list:
      value = tuple(kind(item) for item in value or ())
    values[name] = value
  return config_class(**values)


def _finite(value) -> bool:
  return value is None or math.isfinite(value)


def _finite_list(values) -> bool:
  try:
    return all(math.isfinite(float(v)) for v in values or ())
  except ValueError:
    return False
