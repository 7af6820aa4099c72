"""Commands start without TensorFlow's C++ log lines, unless --verbosity or TF_CPP_MIN_LOG_LEVEL
asks for them; an installed package gives working console scripts.

Which settings hide the lines is import_tensorflow_quietly's decision, checked here in this
process with a stand-in for TensorFlow's import. Real TensorFlow is checked by processes other
tests start anyway (each costs 6 s of CPU to import it): test_reliability.py's training runs,
which log cuInit's error at their first op unless it is hidden, with TF_CPP_MIN_LOG_LEVEL unset,
1 and 2, whose stderr is their one line or nothing; test_train_cli.py's
test_a_bad_flag_value_exits_2_with_one_line with --verbosity=1, which brings the lines back."""

import importlib.abc
import importlib.util
import os
import pathlib
import shutil
import site
import subprocess
import sys
import venv

import absl
import pytest

from tfanom.cli.startup import NATIVE_LOG_LINE, import_tensorflow_quietly, wants_native_logs

from tests.helpers import ROOT


def native_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if NATIVE_LOG_LINE.match(line)]


class _NativeStartUp(importlib.abc.MetaPathFinder, importlib.abc.Loader):
  """Stands in for `import tensorflow`: writes a native log line and another line to file
  descriptor 2, as TensorFlow's C++ start-up does, and records the TF_CPP_MIN_LOG_LEVEL it saw."""

  def __init__(self):
    self.level = 'not imported'

  def find_spec(self, name, path, target=None):
    return importlib.util.spec_from_loader(name, self) if name == 'tensorflow' else None

  def create_module(self, spec):
    return None

  def exec_module(self, module):
    self.level = os.environ.get('TF_CPP_MIN_LOG_LEVEL')
    os.write(2, b'I0000 00:00:1796640788.467048    2132 cudart_stub.cc:31] Could not find cuda\n'
                b'not a native line\n')


@pytest.mark.parametrize('argv, level, quiet', [
    # TF_CPP_MIN_LOG_LEVEL=1, 2 or 3 are the usual ways to quieten TensorFlow: they must not show
    # more than the default (3 once showed the start-up lines, and 2 the cuInit error).
    ([], None, True), ([], '1', True), ([], '2', True), ([], '3', True),
    (['--verbosity=1'], None, False), ([], '0', False)])
def test_the_import_hides_native_lines_unless_asked(argv, level, quiet, monkeypatch, capfd):
  native = _NativeStartUp()
  monkeypatch.delitem(sys.modules, 'tensorflow')
  monkeypatch.setattr(sys, 'meta_path', [native, *sys.meta_path])
  if level is None:
    monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
  else:
    monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', level)
  capfd.readouterr()
  import_tensorflow_quietly(['prog', *argv])
  stderr = capfd.readouterr().err
  assert 'not a native line' in stderr.splitlines()
  if quiet:
    # Level 3 for what TensorFlow logs after its import (the cuInit error), the earlier lines
    # taken out of what the import wrote.
    assert native.level == '3' and not native_lines(stderr)
  else:
    assert native.level == level and len(native_lines(stderr)) == 1


def test_verbosity_parsing():
  assert wants_native_logs(['prog', '--verbosity=1']) and wants_native_logs(['p', '-v', '2'])
  assert not wants_native_logs(['prog', '--verbosity=0']) and not wants_native_logs(['prog'])


def environment_on_top_of_this_one(env_dir: pathlib.Path) -> pathlib.Path:
  """A virtual environment that sees the packages of the interpreter running the tests, whether
  that is a virtual environment (activated or not) or a base installation, and returns its python.

  `--system-site-packages` would not do: it sees the *base* installation's packages even when
  created from a virtual environment's python, and those may lack TensorFlow or `wheel` (then
  building the project fails with "invalid command 'bdist_wheel'"). A .pth file in the new
  environment lists this interpreter's site-packages instead; they come after the environment's
  own, so what is installed into it wins.
  """
  venv.EnvBuilder(with_pip=False).create(env_dir)
  python = env_dir / 'bin' / 'python'
  own = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                       capture_output=True, text=True, check=True).stdout.strip()
  seen = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
  pathlib.Path(own, 'running_interpreter.pth').write_text(''.join(f'{p}\n' for p in seen))
  return python


def test_pip_install_gives_console_scripts_that_run_without_activation(tmp_path):
  # The environment sees this interpreter's packages (TensorFlow is not reinstalled); the project
  # itself is installed into it, and its python and scripts are called by path, not activated.
  env_dir = tmp_path / 'venv'
  # A copy: building writes build/ and *.egg-info beside the sources.
  source = tmp_path / 'source'
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns('.git', 'runs', '__pycache__',
                                                             'build', '*.egg-info'))
  python = environment_on_top_of_this_one(env_dir)
  # Without the activation script's PATH and VIRTUAL_ENV, as a user calling the scripts by path.
  plain = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'TF_CPP_MIN_LOG_LEVEL', 'VIRTUAL_ENV')}
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--quiet',
                  '--no-deps', '--no-build-isolation', str(source)], check=True,
                 capture_output=True, timeout=300, cwd=tmp_path, env=plain)
  location = subprocess.run([str(python), '-c', 'import tfanom, absl; print(tfanom.__file__); '
                             'print(absl.__file__)'], capture_output=True, text=True, check=True,
                            cwd=tmp_path, env=plain)
  tfanom_file, absl_file = location.stdout.split()
  assert tfanom_file.startswith(str(env_dir)) and absl_file == absl.__file__
  result = subprocess.run([str(env_dir / 'bin' / 'tfanom-train'), '--help'], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120, env=plain)
  # absl's --help exits with status 1 after printing the help.
  assert 'Trains one hold-out-class anomaly detector' in result.stdout, result.stderr
  assert '--lr_decay_fractions' in result.stdout and not native_lines(result.stderr)
