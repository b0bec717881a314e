# coding=utf-8
"""Runs a test program in a fresh process with some imports blocked.

Usage: python fresh_process_runner.py BLOCKED_JSON PROGRAM ARGS_JSON

`policy_saver_test_utils.run_fresh_process` starts it. Imports of the
top-level modules listed in `BLOCKED_JSON` fail from the start; `PROGRAM`
then runs as `__main__` with `sys.argv == [PROGRAM, ARGS_JSON]`; at exit the
runner asserts that neither `tf_agents` nor a blocked module was imported.
It uses the standard library only, so it imports nothing the program does
not.
"""

import importlib.abc
import json
import runpy
import sys


class _Blocker(importlib.abc.MetaPathFinder):
  """Fails the import of the given top-level modules."""

  def __init__(self, blocked):
    self._blocked = frozenset(blocked)

  def find_spec(self, name, path=None, target=None):
    del path, target  # Unused.
    if name.split('.')[0] in self._blocked:
      raise ImportError('blocked by test: ' + name)
    return None


def main():
  blocked = json.loads(sys.argv[1])
  program = sys.argv[2]
  sys.meta_path.insert(0, _Blocker(blocked))
  sys.argv = [program] + sys.argv[3:]
  runpy.run_path(program, run_name='__main__')
  assert 'tf_agents' not in sys.modules, 'tf_agents was imported'
  for name in blocked:
    assert name not in sys.modules, name + ' was imported'


if __name__ == '__main__':
  main()
