"""Commands start without TensorFlow's C++ log lines, unless --verbosity or TF_CPP_MIN_LOG_LEVEL
asks for them; an installed package gives working console scripts."""

import os
import pathlib
import shutil
import site
import subprocess
import sys
import venv

import absl
import pytest

from tfanom.cli.startup import NATIVE_LOG_LINE, wants_native_logs

from tests.helpers import ROOT

PROGRAM = ('from tfanom.cli.startup import import_tensorflow_quietly; '
           'import_tensorflow_quietly(); import tensorflow as tf; '
           'import sys; print("own line", file=sys.stderr); print(int(tf.constant(1) + 1))')


def run(argv=(), **env):
  environment = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  environment.update(PYTHONPATH=str(ROOT), **env)
  return subprocess.run([sys.executable, '-c', PROGRAM, *argv], capture_output=True, text=True,
                        env=environment, check=True, timeout=120)


def native_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if NATIVE_LOG_LINE.match(line)]


@pytest.mark.parametrize('level', [None, '1', '2', '3'])
def test_start_up_is_quiet_by_default_and_at_every_quieter_level(level):
  # TF_CPP_MIN_LOG_LEVEL=1, 2 or 3 are the usual ways to quieten TensorFlow: they must not show
  # more than the default (3 once showed the start-up lines, and 2 the cuInit error).
  result = run(**({} if level is None else {'TF_CPP_MIN_LOG_LEVEL': level}))
  assert result.stdout == '2\n'
  assert result.stderr.splitlines() == ['own line']


@pytest.mark.parametrize('argv, env', [(['--verbosity=1'], {}),
                                       ([], {'TF_CPP_MIN_LOG_LEVEL': '0'})])
def test_verbosity_or_the_environment_brings_the_lines_back(argv, env):
  assert native_lines(run(argv, **env).stderr)


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
