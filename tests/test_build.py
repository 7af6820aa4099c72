"""BUILD declares a py_library per module and a py_test per test file, with deps from the imports.

BUILD is generated from the tree, so this test fails whenever a module, test or import changes
without BUILD following. Regenerate it with `python tests/test_build.py > BUILD`.
"""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY_DIRS = ('tfanom', 'experiments', 'benchmarks')
DATA_SUFFIXES = ('.npz', '.txt', '.json')
# Import name -> the name its distribution has in requirements.txt.
DISTRIBUTIONS = {'absl': 'absl-py', 'keras': 'keras', 'numpy': 'numpy', 'sklearn': 'scikit-learn',
                 'tensorflow': 'tensorflow', 'tensorflow_datasets': 'tensorflow-datasets',
                 'matplotlib': 'matplotlib', 'pytest': 'pytest', 'hypothesis': 'hypothesis',
                 'psutil': 'psutil'}


def _target(path: pathlib.Path) -> str:
  return ':' + str(path.relative_to(ROOT).with_suffix(''))


def _module_file(dotted: str):
  base = ROOT.joinpath(*dotted.split('.'))
  for candidate in (base.with_suffix('.py'), base / '__init__.py'):
    if candidate.exists():
      return candidate
  return None


def _deps(path: pathlib.Path) -> list[str]:
  local, external = set(), set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from package import module` depends on the module, `from module import name` on it.
      submodules = [f'{node.module}.{alias.name}' for alias in node.names]
      names = [m for m in submodules if _module_file(m)] or [node.module]
    else:
      continue
    for name in names:
      top = name.split('.')[0]
      if top in LIBRARY_DIRS and _module_file(name) not in (None, path):
        local.add(_target(_module_file(name)))
      elif top in DISTRIBUTIONS:
        external.add(f'requirement("{DISTRIBUTIONS[top]}")')
  return sorted(f'"{d}"' for d in local) + sorted(external)


def _rule(kind: str, path: pathlib.Path, extra: str = '') -> str:
  deps = ''.join(f'        {d},\n' for d in _deps(path))
  relative = path.relative_to(ROOT)
  return (f'{kind}(\n    name = "{relative.with_suffix("")}",\n    srcs = ["{relative}"],\n'
          f'{extra}    deps = [\n{deps}    ],\n)\n')


def generate() -> str:
  rules = ['load("@pip//:requirements.bzl", "requirement")\n'
           'load("@rules_python//python:defs.bzl", "py_library", "py_test")\n\n'
           'package(default_visibility = ["//visibility:public"])\n']
  for directory in LIBRARY_DIRS:
    for path in sorted(ROOT.joinpath(directory).rglob('*.py')):
      # A data file belongs to the module that names it.
      data = sorted(f'"{p.relative_to(ROOT)}"' for p in path.parent.iterdir()
                    if p.suffix in DATA_SUFFIXES and p.name in path.read_text())
      extra = f'    data = [{", ".join(data)}],\n' if data else ''
      rules.append(_rule('py_library', path, extra))
  tests = ROOT / 'tests'
  for path in sorted(tests.glob('test_*.py')):
    rules.append(_rule('py_test', path, '    main = "%s",\n' % path.relative_to(ROOT)))
  return '\n'.join(rules)


def test_build_file_matches_tree():
  assert (ROOT / 'BUILD').read_text() == generate(), (
      'BUILD is out of date: run `python tests/test_build.py > BUILD`')


def test_every_module_and_test_is_declared():
  text = (ROOT / 'BUILD').read_text()
  for directory in LIBRARY_DIRS:
    for path in ROOT.joinpath(directory).rglob('*.py'):
      assert f'srcs = ["{path.relative_to(ROOT)}"]' in text
  for path in (ROOT / 'tests').glob('test_*.py'):
    assert f'py_test(\n    name = "{path.relative_to(ROOT).with_suffix("")}"' in text


if __name__ == '__main__':
  sys.stdout.write(generate())
