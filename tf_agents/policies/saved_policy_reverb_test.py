# coding=utf-8
"""`SavedPolicy` follows weights pushed through a real Reverb variable container.

Upstream's distributed examples (`sac_collect.py`) keep an actor's policy
current with `ReverbVariableContainer.update(policy.variables())`, which
assigns the learner's latest weights, pulled from a Reverb table, into the
policy's variables in place. These tests run that loop with upstream's real
`tf_agents.experimental.distributed.reverb_variable_container` against a real
`reverb.Server` on a loopback port, and check that a `SavedPolicy`'s next
`action` uses the pushed weights, for every backend.

dm-reverb 0.14.0 is built for TensorFlow 2.15, so it is only installed in the
`tf2.15` environment; in other configs every test case skips.
"""

import socket

from absl import logging
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_agents.experimental.distributed import reverb_variable_container
from tf_agents.policies import policy_saver
from tf_agents.policies import policy_saver_test_utils as test_utils
from tf_agents.policies import saved_policy

try:
  import reverb  # pylint: disable=g-import-not-at-top
  _REVERB_IMPORT_ERROR = None
except ImportError as e:  # Not installed outside the tf2.15 environment.
  reverb = None
  _REVERB_IMPORT_ERROR = e

_SKIP_REASON = (
    'dm-reverb 0.14.0 is built for TensorFlow 2.15 only; run with '
    '--config=tf2.15'
)
_BATCH_SIZE = 32
_NUM_STEPS = 2
_LEARNER_TRAIN_STEP = 1000
_BACKENDS = (
    saved_policy.BACKEND_SAVED_MODEL,
    saved_policy.BACKEND_TFLITE,
    saved_policy.BACKEND_AUTO,
)
_KINDS = (test_utils.STATELESS_DETERMINISTIC, test_utils.STATEFUL_DETERMINISTIC)
_CASES = tuple(
    ('{}_{}'.format(kind, backend), kind, backend)
    for kind in _KINDS
    for backend in _BACKENDS
)


def _free_port() -> int:
  """A TCP port that is free on the loopback interface now."""
  try:
    import portpicker  # pylint: disable=g-import-not-at-top
  except ImportError:
    portpicker = None
  if portpicker is not None:
    return portpicker.pick_unused_port()
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _numpy(nest):
  return tf.nest.map_structure(np.asarray, nest)


def _container_values(policy_variables, train_step):
  """The nest upstream's learner pushes and its actors update."""
  return {
      reverb_variable_container.POLICY_KEY: policy_variables,
      reverb_variable_container.TRAIN_STEP_KEY: train_step,
  }


class SavedPolicyReverbTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self._server = None
    if reverb is None:
      if tf.__version__.startswith('2.15.'):
        # The tf2.15 environment's lock has dm-reverb: a failed import there
        # is a broken environment, not a config without reverb.
        self.fail('import reverb failed on TensorFlow {}: {}'.format(
            tf.__version__, _REVERB_IMPORT_ERROR))
      self.skipTest(_SKIP_REASON)

  def tearDown(self):
    if self._server is not None:
      self._server.stop()
      self._server = None
    super().tearDown()

  def _start_server(self, signature_values) -> str:
    """Starts a Reverb server with upstream's variable table; its address."""
    signature = tf.nest.map_structure(
        lambda v: tf.TensorSpec(v.shape, dtype=v.dtype), signature_values
    )
    port = _free_port()
    self._server = reverb.Server(
        tables=[
            reverb.Table(
                name=reverb_variable_container.DEFAULT_TABLE,
                sampler=reverb.selectors.Uniform(),
                remover=reverb.selectors.Fifo(),
                rate_limiter=reverb.rate_limiters.MinSize(1),
                max_size=1,
                max_times_sampled=0,
                signature=signature,
            )
        ],
        port=port,
    )
    return 'localhost:{}'.format(port)

  def _rollout(self, policy, initial_state, convert):
    """Actions of `_NUM_STEPS` steps feeding the state back, and the state."""
    state = initial_state
    actions = []
    for step in range(_NUM_STEPS):
      time_step = test_utils.time_steps(_BATCH_SIZE, step, seed=3)
      result = policy.action(convert(time_step), state)
      actions.append(result.action)
      state = result.state
    return _numpy((actions, state))

  def _tf_rollout(self, policy):
    return self._rollout(
        policy, policy.get_initial_state(_BATCH_SIZE), lambda t: t
    )

  def _saved_rollout(self, loaded):
    return self._rollout(
        loaded, loaded.get_initial_state(_BATCH_SIZE), _numpy
    )

  def _assert_rollouts_equal(self, expected, actual, msg):
    (expected_actions, expected_state), (actual_actions, actual_state) = (
        expected, actual)
    for step, (e, a) in enumerate(zip(expected_actions, actual_actions)):
      self.assertAllEqual(e, a, msg='{}, step {}'.format(msg, step))
    test_utils.assert_nests_close(
        self, expected_state, actual_state, atol=1e-5, rtol=1e-5)

  @parameterized.named_parameters(*_CASES)
  def test_update_from_container_changes_next_action(self, kind, backend):
    # Learner side: a policy, its export and the variable table.
    policy = test_utils.make_policy(kind)
    learner_train_step = tf.Variable(0, dtype=tf.int64, name='train_step')
    export_dir = self.create_tempdir().full_path
    policy_saver.PolicySaver(policy, train_step=learner_train_step).save(
        export_dir)
    learner_values = _container_values(policy.variables(), learner_train_step)
    address = self._start_server(learner_values)
    old_rollout = self._tf_rollout(policy)

    # Actor side: the export, and upstream's container built on the server's
    # table, updating the loaded variables in place as sac_collect.py does.
    loaded = saved_policy.SavedPolicy(export_dir, backend=backend)
    in_use = loaded.backend
    logging.info('backend %r: %r in use', backend, in_use)
    msg = 'backend {!r} ({!r} in use)'.format(backend, in_use)
    self._assert_rollouts_equal(
        old_rollout, self._saved_rollout(loaded), msg + ', as exported')
    actor_train_step = tf.Variable(0, dtype=tf.int64, name='train_step')
    actor_values = _container_values(loaded.variables(), actor_train_step)
    actor_container = reverb_variable_container.ReverbVariableContainer(
        address, table_names=[reverb_variable_container.DEFAULT_TABLE])

    # The learner trains (here: new weights, every element changed) and
    # pushes them.
    rng = np.random.RandomState(7)
    for variable in policy.variables():
      value = variable.numpy()
      variable.assign(
          -1.5 * value + rng.normal(0.0, 0.1, value.shape).astype(value.dtype))
    learner_train_step.assign(_LEARNER_TRAIN_STEP)
    new_rollout = self._tf_rollout(policy)
    self.assertFalse(
        all(np.array_equal(o, n) for o, n in zip(old_rollout[0],
                                                 new_rollout[0])),
        'precondition: the new weights must change some action')
    learner_container = reverb_variable_container.ReverbVariableContainer(
        address, table_names=[reverb_variable_container.DEFAULT_TABLE])
    learner_container.push(learner_values)

    actor_container.update(actor_values)

    # The loaded variables hold the pushed values ...
    self.assertEqual(actor_train_step.numpy(), _LEARNER_TRAIN_STEP)
    self.assertLen(loaded.variables(), len(policy.variables()))
    for pushed, assigned in zip(policy.variables(), loaded.variables()):
      self.assertAllEqual(pushed.numpy(), assigned.numpy(), msg=assigned.name)
    # ... and the next action uses them.
    updated_rollout = self._saved_rollout(loaded)
    if all(np.array_equal(o, u) for o, u in zip(old_rollout[0],
                                                updated_rollout[0])):
      self.fail(
          '{}: after container.update the actions are still those of the '
          'exported weights: the backend does not follow in-place '
          'assignment to variables().'.format(msg))
    self._assert_rollouts_equal(
        new_rollout, updated_rollout, msg + ', after container.update')


if __name__ == '__main__':
  tf.test.main()
