# coding=utf-8
"""Tests for tf_agents.benchmarks.cases."""

import os

import numpy as np
import tensorflow as tf

from tf_agents.benchmarks import cases
from tf_agents.policies import policy_saver


class CasesTest(tf.test.TestCase):

  def testUpstreamSaverIsLoadedFromTheDistribution(self):
    upstream = cases.load_upstream_policy_saver()
    self.assertIsNot(upstream, policy_saver)
    self.assertEqual('upstream_policy_saver', upstream.__name__)
    self.assertNotEqual(
        os.path.realpath(upstream.__file__),
        os.path.realpath(policy_saver.__file__),
    )
    # Ours has the variables-only fast path; upstream's does not.
    self.assertTrue(hasattr(policy_saver.PolicySaver, 'last_save_kind'))
    self.assertFalse(hasattr(upstream.PolicySaver, 'last_save_kind'))
    self.assertIs(upstream, cases.saver_module(cases.UPSTREAM))
    self.assertIs(policy_saver, cases.saver_module(cases.OURS))

  def testSmallPolicies(self):
    small = [case for case in cases.CASES if case.small]
    self.assertEqual(['q_mlp_10k', 'q_rnn_lstm', 'actor_normal'],
                     [case.name for case in small])
    for case in small:
      parameters = cases.num_parameters(cases.make_policy(case))
      self.assertBetween(parameters, 1000, 100000, case.name)
    self.assertEqual(
        cases.mlp_parameters(cases.CASES_BY_NAME['q_mlp_10k']),
        cases.num_parameters(
            cases.make_policy(cases.CASES_BY_NAME['q_mlp_10k'])))

  def testMemoryCaseIsTheLargestMlp(self):
    self.assertEqual('q_mlp_34m', cases.memory_case(
        [case.name for case in cases.CASES]))
    self.assertEqual('q_mlp_10k', cases.memory_case(
        ['q_mlp_10k', 'q_rnn_lstm']))
    self.assertIsNone(cases.memory_case(['actor_normal']))

  def testCheckCaseNames(self):
    cases.check_case_names(['q_mlp_10k'])
    with self.assertRaisesRegex(ValueError, 'nope'):
      cases.check_case_names(['q_mlp_10k', 'nope'])

  def testFreshValues(self):
    variables = [
        tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4)),
        tf.Variable(np.full([4], -0.2, np.float32)),
        tf.Variable(np.int64(7)),
    ]
    first = cases.fresh_values(variables, seed=1)
    again = cases.fresh_values(variables, seed=1)
    other = cases.fresh_values(variables, seed=2)
    for value, same, variable in zip(first, again, variables):
      self.assertAllEqual(same, value)
      self.assertEqual(variable.shape, value.shape)
      self.assertEqual(variable.dtype.as_numpy_dtype, value.dtype)
    self.assertNotAllClose(variables[0].numpy(), first[0])
    self.assertNotAllClose(first[0], other[0])
    # Constant and integer variables keep their values.
    self.assertAllEqual(variables[1].numpy(), first[1])
    self.assertEqual(7, first[2])


if __name__ == '__main__':
  tf.test.main()
