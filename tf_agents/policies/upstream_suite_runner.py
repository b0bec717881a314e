# coding=utf-8
"""Runs upstream tf-agents' `policy_saver_test.py` against one saver module.

`python -m tf_agents.policies.upstream_suite_runner ours|upstream` loads the
test file shipped in the installed tf-agents distribution and runs it with
`tf_agents.policies.policy_saver` being this repository's module (`ours`)
or the distribution's own (`upstream`), then prints one JSON line:
`{"saver": <file of the module tested>, "run": N, "problems": {test name:
first line of its error}}`.
"""

import importlib.metadata
import importlib.util
import json
import os
import sys
import unittest

_TEST_FILE = 'tf_agents/policies/policy_saver_test.py'
_SAVER_FILE = 'tf_agents/policies/policy_saver.py'


def distribution_file(relative: str) -> str:
  """The path of `relative` inside the installed tf-agents distribution."""
  distribution = importlib.metadata.distribution('tf-agents')
  for entry in distribution.files or ():
    if str(entry) == relative:
      return str(distribution.locate_file(entry))
  raise FileNotFoundError('{} is not in the installed tf-agents'.format(
      relative))


def _load(name: str, path: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def _first_line(text: str) -> str:
  lines = [l for l in text.strip().splitlines() if l.strip()]
  return lines[-1][:300] if lines else ''


def main(which: str) -> None:
  import tf_agents.policies  # pylint: disable=g-import-not-at-top
  if which == 'upstream':
    saver = _load('tf_agents.policies.policy_saver',
                  distribution_file(_SAVER_FILE))
    tf_agents.policies.policy_saver = saver
  else:
    from tf_agents.policies import policy_saver as saver  # pylint: disable=g-import-not-at-top
  tests = _load('upstream_policy_saver_test', distribution_file(_TEST_FILE))
  suite = unittest.defaultTestLoader.loadTestsFromModule(tests)
  with open(os.devnull, 'w') as sink:
    result = unittest.TextTestRunner(stream=sink, verbosity=0).run(suite)
  problems = {}
  for test, trace in result.failures + result.errors:
    problems[test.id().split('.')[-1]] = _first_line(trace)
  print(json.dumps({'saver': saver.__file__, 'run': result.testsRun,
                    'problems': problems}), flush=True)


if __name__ == '__main__':
  main(sys.argv[1])
