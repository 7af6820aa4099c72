"""BUILD declares a py_binary per entry point, a py_library per other module and per test helper
module, and a py_test per test file that runs the file through pytest (tests/pytest_main.py), with
deps from the imports; and the imports form layers without cycles.

BUILD is generated from the tree, so this test fails whenever a module, test or import changes
without BUILD following. Regenerate it with `python tests/test_build.py > BUILD`. Which Bazel
builds it, and how: docs/layout.md.
"""

import ast
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY_DIRS = ('tfanom', 'experiments', 'benchmarks')
DATA_SUFFIXES = ('.npz', '.txt', '.json')
# Test modules that are not test files: libraries of the py_tests. pytest loads conftest.py itself.
TEST_LIBRARIES = ('tests/conftest.py', 'tests/helpers.py')
PYTEST_MAIN = 'tests/pytest_main.py'
IMPORTED_DIRS = LIBRARY_DIRS + ('tests',)
# Import name -> the name its distribution has in requirements.txt.
DISTRIBUTIONS = {'absl': 'absl-py', 'keras': 'keras', 'numpy': 'numpy', 'sklearn': 'scikit-learn',
                 'tensorflow': 'tensorflow', 'tensorflow_datasets': 'tensorflow-datasets',
                 'matplotlib': 'matplotlib', 'pytest': 'pytest', 'hypothesis': 'hypothesis',
                 'psutil': 'psutil', 'PIL': 'pillow', 'scipy': 'scipy'}


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
      # `from package import module` depends on the module, `from module import name` on it,
      # and `from package import module, name` on both.
      submodules = [f'{node.module}.{alias.name}' for alias in node.names]
      names = [m for m in submodules if _module_file(m)]
      names += [node.module] if len(names) < len(submodules) else []
    else:
      continue
    for name in names:
      top = name.split('.')[0]
      parts = name.split('.')
      if top in IMPORTED_DIRS:
        # Importing a module runs every enclosing package's __init__.py first; the packages that
        # enclose this file have run already (a dependency on them would be a cycle).
        files = {_module_file('.'.join(parts[:n])) for n in range(1, len(parts) + 1)}
        local.update(_target(f) for f in files - {None, path}
                     if not (f.name == '__init__.py' and f.parent in path.parents))
      elif top in DISTRIBUTIONS:
        external.add(f'requirement("{DISTRIBUTIONS[top]}")')
  return sorted(f'"{d}"' for d in local) + sorted(external)


def _rule(kind: str, path: pathlib.Path, extra: str = '', srcs=(), deps=()) -> str:
  deps = ''.join(f'        {d},\n' for d in sorted(set(_deps(path)) | set(deps)))
  relative = path.relative_to(ROOT)
  srcs = ', '.join(f'"{src}"' for src in (relative, *srcs))
  return (f'{kind}(\n    name = "{relative.with_suffix("")}",\n    srcs = [{srcs}],\n'
          f'{extra}    deps = [\n{deps}    ],\n)\n')


def _is_entry_point(path: pathlib.Path) -> bool:
  return "\nif __name__ == '__main__':" in path.read_text()


def _test_files():
  return sorted((ROOT / 'tests').rglob('test_*.py'))


def generate() -> str:
  rules = ['load("@pip//:requirements.bzl", "requirement")\n'
           'load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")\n\n'
           'package(default_visibility = ["//visibility:public"])\n']
  for directory in LIBRARY_DIRS:
    for path in sorted(ROOT.joinpath(directory).rglob('*.py')):
      # A data file belongs to the module that names it.
      data = sorted(f'"{p.relative_to(ROOT)}"' for p in path.parent.iterdir()
                    if p.suffix in DATA_SUFFIXES and p.name in path.read_text())
      extra = f'    data = [{", ".join(data)}],\n' if data else ''
      if _is_entry_point(path):
        rules.append(_rule('py_binary', path, extra + f'    main = "{path.relative_to(ROOT)}",\n'))
      else:
        rules.append(_rule('py_library', path, extra))
  for name in TEST_LIBRARIES:
    rules.append(_rule('py_library', ROOT / name))
  # A test file run as a script would define its tests and exit 0: pytest runs it instead, from
  # the runfiles root, where pytest.ini makes it find conftest.py and the tests' imports.
  conftest = f'"{_target(ROOT / TEST_LIBRARIES[0])}"'
  for path in _test_files():
    extra = (f'    main = "{PYTEST_MAIN}",\n    args = ["{path.relative_to(ROOT)}"],\n'
             '    data = ["pytest.ini"],\n')
    rules.append(_rule('py_test', path, extra, srcs=[PYTEST_MAIN], deps=[conftest]))
  return '\n'.join(rules)


def test_build_file_matches_tree():
  assert (ROOT / 'BUILD').read_text() == generate(), (
      'BUILD is out of date: run `python tests/test_build.py > BUILD`')


def test_every_module_and_test_is_declared():
  text = (ROOT / 'BUILD').read_text()
  for directory in LIBRARY_DIRS:
    for path in ROOT.joinpath(directory).rglob('*.py'):
      assert f'srcs = ["{path.relative_to(ROOT)}"]' in text
  for path in _test_files():
    assert f'py_test(\n    name = "{path.relative_to(ROOT).with_suffix("")}"' in text
  assert text.count(f'main = "{PYTEST_MAIN}"') == len(_test_files())


def _import_graph() -> dict[str, set[str]]:
  """Module target -> the library module targets it imports (from the same parse as BUILD)."""
  graph = {}
  for directory in LIBRARY_DIRS:
    for path in ROOT.joinpath(directory).rglob('*.py'):
      graph[_target(path)] = {dep.strip('"') for dep in _deps(path) if dep.startswith('":')}
  return graph


def test_imports_have_no_cycle():
  graph, done, path = _import_graph(), set(), []

  def visit(node):
    assert node not in path, f'import cycle: {" -> ".join(path[path.index(node):] + [node])}'
    if node in done:
      return
    path.append(node)
    for dep in sorted(graph.get(node, ())):
      visit(dep)
    path.pop()
    done.add(node)

  for node in sorted(graph):
    visit(node)


def test_only_training_code_imports_the_training_loop():
  graph = _import_graph()
  trains = (':tfanom/training/', ':tfanom/train', ':benchmarks/')
  # Evaluation and export read checkpoints as training writes them, through the one definition of
  # what a checkpoint holds; that module imports no other part of training.
  # (A module depends on its packages' __init__.py, which import nothing.)
  shared = (':tfanom/training/checkpoints', ':tfanom/training/__init__')
  assert not {d for d in graph[shared[0]] if d.startswith(':tfanom/training/') and d not in shared}
  for module, deps in graph.items():
    if not module.startswith(trains):
      assert not {d for d in deps if d.startswith(':tfanom/training/') and d not in shared}, (
          f'{module} imports the training loop')


if __name__ == '__main__':
  sys.stdout.write(generate())
