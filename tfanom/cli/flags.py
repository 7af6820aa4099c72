"""Flags generated from a config dataclass, so that each setting is declared once (in the config).

`define_flags(TrainConfig)` defines one absl flag per field, with the field's help text, type and
default; `config_from_flags(TrainConfig)` reads them back into a config. A flag's value is parsed
and checked by the config's own rules (`tfanom.config.parse_setting`: type, choices, bounds) as it
is read, and `run_command` turns any flag error of any command into one line and exit status 2.
"""

import dataclasses
import sys

from absl import app, flags, logging

from tfanom.config import parse_setting, setting_types
from tfanom.errors import UsageError, reported_as_one_line


class _SettingParser(flags.ArgumentParser):
  """Parses a flag as `parse_setting` parses field `name` of `config_class`."""

  def __init__(self, config_class, name: str):
    self.config_class, self.name = config_class, name
    self.kind = setting_types(config_class)[name]

  def parse(self, argument):
    if not isinstance(argument, str):  # a default, already typed
      return argument
    try:
      return parse_setting(self.name, argument, self.config_class)
    except UsageError as error:
      raise ValueError(str(error)) from None

  def flag_type(self):
    return f'{"list of " if self.kind.is_list else ""}{self.kind.of.__name__}'


def define_flags(config_class, flag_values=flags.FLAGS) -> dict:
  """One flag per field of `config_class` (a dataclass of `tfanom.config.setting` fields), in
  `flag_values`. Returns the flag holders by field name."""
  kinds = setting_types(config_class)
  holders = {}
  for field in dataclasses.fields(config_class):
    help_text, required = field.metadata['help'], field.metadata.get('required', False)
    if kinds[field.name].of is bool and not kinds[field.name].is_list:
      # absl's own boolean flags, for the --name / --noname forms.
      holder = flags.DEFINE_bool(field.name, field.default, help_text, flag_values=flag_values,
                                 required=required)
    else:
      serializer = flags.CsvListSerializer(',') if kinds[field.name].is_list else None
      holder = flags.DEFINE(_SettingParser(config_class, field.name), field.name, field.default,
                            help_text, flag_values=flag_values, serializer=serializer,
                            required=required)
    for alias in field.metadata.get('aliases', ()):
      flags.DEFINE_alias(alias, field.name, flag_values=flag_values)
    holders[field.name] = holder
  return holders


def config_from_flags(config_class, holders: dict):
  """A `config_class` holding the parsed values of the flags `define_flags` returned."""
  return config_class(**{name: holder.value for name, holder in holders.items()})


def parse_flags(program: str, argv, flag_values=flags.FLAGS) -> list[str]:
  """Parses `argv` into `flag_values`; a flag error (an unknown flag, a value of the wrong type
  or outside its choices or bounds, a required flag missing) ends in one line naming the flag and
  what it takes, and exit status 2."""
  try:
    return flag_values(argv)
  except flags.Error as error:
    message = str(error)
    # absl writes "flag --name=value: reason"; the reasons of parse_setting name the flag again.
    if message.startswith('flag --') and ': --' in message:
      message = message[message.index(': --') + 2:]
    elif 'Non-boolean argument' in message:
      message = message[len('flag '):message.index(': (')] + ' must be true or false'
    elif 'Did you mean' not in message:
      message = message.removeprefix('flag ') + ': see --helpshort'
    print(f'{program}: error: {message}', file=sys.stderr)
    sys.exit(2)


def config_command(program: str, config_class, call, quiet: bool = True):
  """The command `program` that turns its flags into one `config_class` and makes one library
  call, as a function of a FlagValues: it defines the flags there and returns the command's
  `main`. The console script runs it on `flags.FLAGS`; a caller running several commands in one
  process gives each its own FlagValues, as their flag names collide."""

  def command(flag_values=flags.FLAGS):
    return config_main(program, config_class, define_flags(config_class, flag_values), call, quiet)

  return command


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


def run_command(main, module, flag_modules=()) -> None:
  """`app.run(main)` for the command line defined in `module`, however it was started.

  absl's --help lists the key flags and the docstring of the program's main module, which is the
  console script or the `python -m tfanom.train` alias rather than `module`: both are handed over
  to it first, with the flags that `flag_modules` define for the command.
  """
  program = sys.argv[0]
  # The generated flags are defined by this module: they count as the command's.
  for defining in (module, sys.modules[__name__], *flag_modules):
    for flag in flags.FLAGS.get_key_flags_for_module(defining):
      flags.FLAGS.register_key_flag_for_module(program, flag)
  sys.modules['__main__'].__doc__ = module.__doc__
  app.run(main, flags_parser=lambda argv: parse_flags(program_name(module), argv))


def program_name(module) -> str:
  """The name a command's messages start with: the name of the module that defines it."""
  # Run as `python -m tfanom.train` the module is __main__; its spec keeps the name typed.
  name = module.__spec__.name if module.__name__ == '__main__' else module.__name__
  name = name.removeprefix('tfanom.') if name.startswith('tfanom.experiments.') else name
  return name.removesuffix('.__main__')  # python -m tfanom.baselines
