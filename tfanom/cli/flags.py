"""Flags generated from a config dataclass, so that each setting is declared once (in the config).

`define_flags(TrainConfig)` defines one absl flag per field, with the field's help text, type and
default; `config_from_flags(TrainConfig)` reads them back into a config. Numeric flags refuse NaN
and infinities when they are parsed.
"""

import dataclasses
import math
import sys

from absl import app, flags, logging

from tfanom.config import setting_kinds
from tfanom.errors import reported_as_one_line

_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
           bool: flags.DEFINE_bool}


def define_flags(config_class, flag_values=flags.FLAGS) -> dict:
  """One flag per field of `config_class` (a dataclass of `tfanom.config.setting` fields), in
  `flag_values`. Returns the flag holders by field name."""
  kinds = setting_kinds(config_class)
  holders = {}
  for field in dataclasses.fields(config_class):
    kind, is_list = kinds[field.name]
    help_text = field.metadata['help']
    if is_list:
      default = ','.join(str(v) for v in field.default) if field.default else None
      holder = flags.DEFINE_list(field.name, default, help_text, flag_values=flag_values)
      if kind is float:
        flags.register_validator(field.name, _finite_list, f'--{field.name} takes finite numbers',
                                 flag_values=flag_values)
    else:
      holder = _DEFINE[kind](field.name, field.default, help_text, flag_values=flag_values,
                             required=field.metadata.get('required', False))
      if kind is float:
        flags.register_validator(field.name, _finite, f'--{field.name} must be a finite number',
                                 flag_values=flag_values)
    for alias in field.metadata.get('aliases', ()):
      flags.DEFINE_alias(alias, field.name, flag_values=flag_values)
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


def config_main(program: str, config_class, settings: dict, call, quiet: bool = True):
  """The `main` of a command that turns its flags into one `config_class` and makes one library
  call, `call(config, log)`, whose UsageErrors end in one line and exit status 2. `quiet` hides
  absl's INFO lines."""

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    if quiet:
      logging.set_verbosity(logging.WARNING)
    with reported_as_one_line(program):
      call(config_from_flags(config_class, settings), lambda line: print(line, flush=True))

  return main


def run_command(main, module) -> None:
  """`app.run(main)` for the command line defined in `module`, however it was started.

  absl's --help lists the key flags and the docstring of the program's main module, which is the
  console script or the `python -m tfanom.train` alias rather than `module`: both are handed over
  to it first.
  """
  program = sys.argv[0]
  for flag in flags.FLAGS.get_key_flags_for_module(module):
    flags.FLAGS.register_key_flag_for_module(program, flag)
  sys.modules['__main__'].__doc__ = module.__doc__
  app.run(main)
