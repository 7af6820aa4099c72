"""Commands start without TensorFlow's C++ log lines, unless --verbosity or TF_CPP_MIN_LOG_LEVEL
asks for them; an installed package gives working console scripts."""

import os
import pathlib
import shutil
import subprocess
import sys
import venv

import pytest

from tfanom.cli.startup import NATIVE_LOG_LINE, wants_native_logs

ROOT = pathlib.Path(__file__).resolve().parents[2]
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


def test_start_up_is_quiet_by_default():
  result = run()
  assert result.stdout == '2\n'
  assert result.stderr.splitlines() == ['own line']


@pytest.mark.parametrize('argv, env', [(['--verbosity=1'], {}),
                                       ([], {'TF_CPP_MIN_LOG_LEVEL': '0'})])
def test_verbosity_or_the_environment_brings_the_lines_back(argv, env):
  assert native_lines(run(argv, **env).stderr)


def test_verbosity_parsing():
  assert wants_native_logs(['prog', '--verbosity=1']) and wants_native_logs(['p', '-v', '2'])
  assert not wants_native_logs(['prog', '--verbosity=0']) and not wants_native_logs(['prog'])


def test_pip_install_gives_console_scripts_that_run_without_activation(tmp_path):
  # The environment sees this machine's packages (TensorFlow is not reinstalled); the project
  # itself is installed into it, and its python and scripts are called by path, not activated.
  env_dir = tmp_path / 'venv'
  # A copy: building writes build/ and *.egg-info beside the sources.
  source = tmp_path / 'source'
  shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns('.git', 'runs', '__pycache__',
                                                             'build', '*.egg-info'))
  venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
  python = env_dir / 'bin' / 'python'
  subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--quiet',
                  '--no-deps', '--no-build-isolation', str(source)], check=True,
                 capture_output=True, timeout=300, cwd=tmp_path)
  location = subprocess.run([str(python), '-c', 'import tfanom; print(tfanom.__file__)'],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
  assert str(env_dir) in location.stdout
  result = subprocess.run([str(env_dir / 'bin' / 'tfanom-train'), '--help'], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120,
                          env={k: v for k, v in os.environ.items()
                               if k not in ('PYTHONPATH', 'TF_CPP_MIN_LOG_LEVEL')})
  # absl's --help exits with status 1 after printing the help.
  assert 'Trains one hold-out-class anomaly detector' in result.stdout, result.stderr
  assert '--lr_decay_fractions' in result.stdout and not native_lines(result.stderr)
