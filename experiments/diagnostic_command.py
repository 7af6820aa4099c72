"""The command line of a diagnostic of one trained run (`experiments.covariance`,
`experiments.rotation_head`): --workdir and --data_dir in, a JSON report on stdout, progress on
stderr, errors as one line."""

import functools
import importlib
import json
import sys

from absl import app, flags

from tfanom.cli.flags import program_name, run_command


def run_diagnostic(module, diagnose: str, workdir_help: str) -> None:
  """Runs the command of `module` (its flags, --help and messages are the module's): it calls
  `diagnose` ('module:function' under experiments, imported once the flags parse: importing
  TensorFlow takes seconds) with the workdir, the data dir and a log."""
  flags.DEFINE_string('workdir', None, workdir_help, required=True)
  flags.DEFINE_string('data_dir', None, "Replaces the run's --data_dir.")
  run_command(functools.partial(_main, name=program_name(module), diagnose=diagnose,
                                settings=flags.FLAGS), module, [sys.modules[__name__]])


def _main(argv, name, diagnose, settings):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from tfanom.cli.startup import import_tensorflow_quietly  # pylint: disable=g-import-not-at-top
  import_tensorflow_quietly()  # without TensorFlow's native start-up lines, as tfanom's commands
  from tfanom.errors import reported_as_one_line  # pylint: disable=g-import-not-at-top
  module, function = diagnose.split(':')
  function = getattr(importlib.import_module(f'{__package__}.{module}'), function)
  with reported_as_one_line(name):
    report = function(settings.workdir, settings.data_dir,
                      log=lambda line: print(line, file=sys.stderr))
  print(json.dumps(report, indent=2))
