# coding=utf-8
"""Upstream tf-agents' own `policy_saver_test.py` passes against this module.

Upstream's test file (from the installed tf-agents 0.19.0 distribution) runs
twice in fresh processes (`upstream_suite_runner`): against this
repository's `policy_saver` and against upstream's own. Every test that
fails with this module must fail the same way with upstream's, in this
config: on TensorFlow 2.21 those are the two TFLite conversions of a
seeded or unseeded stochastic `action` with `input_fn_and_spec`, which need
select TF ops (`FlexStringToNumber`) that upstream's test converts without.
"""

import json
import os
import subprocess
import sys

from absl import logging
import tensorflow as tf

from tf_agents.policies import policy_saver_test_utils as utils


def _run(which):
  env = utils.repository_env()
  proc = subprocess.run(
      [sys.executable, '-m', 'tf_agents.policies.upstream_suite_runner',
       which],
      capture_output=True, text=True, env=env, timeout=1200, check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    raise AssertionError('upstream suite runner failed ({}):\n{}'.format(
        proc.returncode, proc.stderr[-3000:]))
  return json.loads(lines[-1])


class UpstreamSuiteTest(tf.test.TestCase):

  def testUpstreamSuiteFailsOnlyWhereUpstreamsSaverFails(self):
    ours = _run('ours')
    upstream = _run('upstream')
    self.assertIn(os.path.join('site-packages', 'tf_agents'),
                  upstream['saver'])
    self.assertNotIn('site-packages', ours['saver'])
    self.assertGreaterEqual(ours['run'], 25)
    self.assertEqual(ours['run'], upstream['run'])
    logging.warning('upstream suite: %d tests; failing with ours: %s; '
                    'failing with upstream: %s', ours['run'],
                    ours['problems'], upstream['problems'])
    self.assertContainsSubset(set(ours['problems']),
                              set(upstream['problems']))
    for name, problem in ours['problems'].items():
      # The same kind of error as upstream's saver gets.
      self.assertEqual(problem.split(':')[0],
                       upstream['problems'][name].split(':')[0], name)


if __name__ == '__main__':
  tf.test.main()
