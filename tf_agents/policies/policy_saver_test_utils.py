# coding=utf-8
"""Small policies, time steps and helpers shared by the policy_saver tests."""

import json
import os
import subprocess
import sys
from typing import Any, Dict, Sequence

import numpy as np
import tensorflow as tf

from tf_agents.networks import actor_distribution_network
from tf_agents.networks import actor_distribution_rnn_network
from tf_agents.networks import q_network
from tf_agents.networks import q_rnn_network
from tf_agents.policies import actor_policy
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import greedy_policy
from tf_agents.policies import q_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

OBSERVATION_SPEC = tensor_spec.BoundedTensorSpec(
    (3,), tf.float32, minimum=-1.0, maximum=1.0, name='obs'
)
TIME_STEP_SPEC = ts.time_step_spec(OBSERVATION_SPEC)
DISCRETE_ACTION_SPEC = tensor_spec.BoundedTensorSpec(
    (), tf.int32, minimum=0, maximum=2, name='act'
)
CONTINUOUS_ACTION_SPEC = tensor_spec.BoundedTensorSpec(
    (2,), tf.float32, minimum=-1.0, maximum=1.0, name='act'
)

# Kinds of policies the tests export.
STATELESS_DETERMINISTIC = 'stateless_deterministic'
STATEFUL_DETERMINISTIC = 'stateful_deterministic'
STATELESS_STOCHASTIC = 'stateless_stochastic'
STATEFUL_STOCHASTIC = 'stateful_stochastic'
ALL_KINDS = (
    STATELESS_DETERMINISTIC,
    STATEFUL_DETERMINISTIC,
    STATELESS_STOCHASTIC,
    STATEFUL_STOCHASTIC,
)


def make_policy(kind: str):
  """Returns a tiny policy of `kind` over `TIME_STEP_SPEC`.

  Deterministic kinds are greedy Q policies (discrete actions); stochastic
  kinds are `ActorPolicy`s with a distribution network (continuous actions).

  Args:
    kind: One of `ALL_KINDS`.

  Returns:
    A `TFPolicy` with its variables created.
  """
  if kind == STATELESS_DETERMINISTIC:
    net = q_network.QNetwork(
        OBSERVATION_SPEC, DISCRETE_ACTION_SPEC, fc_layer_params=(4,)
    )
    policy = greedy_policy.GreedyPolicy(
        q_policy.QPolicy(TIME_STEP_SPEC, DISCRETE_ACTION_SPEC, net)
    )
  elif kind == STATEFUL_DETERMINISTIC:
    net = q_rnn_network.QRnnNetwork(
        OBSERVATION_SPEC, DISCRETE_ACTION_SPEC, lstm_size=(4,)
    )
    policy = greedy_policy.GreedyPolicy(
        q_policy.QPolicy(TIME_STEP_SPEC, DISCRETE_ACTION_SPEC, net)
    )
  elif kind == STATELESS_STOCHASTIC:
    net = actor_distribution_network.ActorDistributionNetwork(
        OBSERVATION_SPEC, CONTINUOUS_ACTION_SPEC, fc_layer_params=(4,)
    )
    policy = actor_policy.ActorPolicy(
        TIME_STEP_SPEC, CONTINUOUS_ACTION_SPEC, net
    )
  elif kind == STATEFUL_STOCHASTIC:
    net = actor_distribution_rnn_network.ActorDistributionRnnNetwork(
        OBSERVATION_SPEC,
        CONTINUOUS_ACTION_SPEC,
        input_fc_layer_params=(4,),
        lstm_size=(4,),
        output_fc_layer_params=(),
    )
    policy = actor_policy.ActorPolicy(
        TIME_STEP_SPEC, CONTINUOUS_ACTION_SPEC, net
    )
  else:
    raise ValueError('Unknown policy kind {!r}'.format(kind))
  # Create the variables.
  policy.action(time_steps(1, 0), policy.get_initial_state(1))
  return policy


def time_steps(batch_size: int, step: int, seed: int = 0) -> ts.TimeStep:
  """A batch of time steps: `restart` at step 0, else `transition`."""
  rng = np.random.RandomState(seed * 1000 + step)
  observation = rng.uniform(-1, 1, (batch_size, 3)).astype(np.float32)
  step_type = ts.StepType.FIRST if step == 0 else ts.StepType.MID
  return ts.TimeStep(
      step_type=tf.fill([batch_size], tf.constant(step_type, tf.int32)),
      reward=tf.constant(rng.uniform(0, 1, batch_size), tf.float32),
      discount=tf.ones([batch_size], tf.float32),
      observation=tf.constant(observation),
  )


def flat_time_step(signature, time_step: ts.TimeStep) -> Dict[str, tf.Tensor]:
  """Keys a time step by the flat `action` signature's time-step inputs."""
  _, inputs = signature.structured_input_signature
  by_spec_name = {}
  for field, value in time_step._asdict().items():
    by_spec_name['0/' + field] = value
    by_spec_name[getattr(TIME_STEP_SPEC, field).name] = value
  return {
      key: by_spec_name[spec.name]
      for key, spec in inputs.items()
      if spec.name in by_spec_name
  }


def assert_nests_close(test_case, expected, actual, **kwargs) -> None:
  tf.nest.map_structure(
      lambda e, a: test_case.assertAllClose(e, a, **kwargs),
      tf.nest.map_structure(np.asarray, expected),
      tf.nest.map_structure(np.asarray, actual),
  )


def repository_env() -> Dict[str, str]:
  """The environment for a child Python that imports this repository.

  Its `PYTHONPATH` is this process's `sys.path` (under Bazel: the runfiles),
  so `python -m tf_agents.policies.<module>` runs the repository's code.

  Returns:
    A copy of `os.environ` with that path and quiet TensorFlow logging.
  """
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  env['TF_USE_LEGACY_KERAS'] = '1'
  return env


def testdata_path(name: str) -> str:
  """The path of `tf_agents/policies/testdata/<name>`.

  Found next to this module, which is where it is both in the source tree
  and in a Bazel test's runfiles (the programs are `data` of the tests).

  Args:
    name: A file name in `testdata/`.

  Returns:
    Its absolute path.
  """
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), 'testdata',
                      name)


def run_fresh_process(
    test_case: tf.test.TestCase,
    program: str,
    args: Sequence[Any] = (),
    block_modules: Sequence[str] = (),
) -> Any:
  """Runs a testdata program in a fresh Python that never imports this repo.

  The child (`testdata/fresh_process_runner.py`) runs `sys.executable` with
  the working directory a new temp dir and no PYTHONPATH; the program must
  print one JSON document on its last stdout line. Imports of
  `block_modules` fail in the child. The child asserts at exit that
  `tf_agents` was never imported.

  Args:
    test_case: The calling test (for temp dirs and failures).
    program: File name of the program in `testdata/`; its `sys.argv[1]` is
      `args` as JSON.
    args: JSON-serializable arguments.
    block_modules: Top-level module names whose import must fail.

  Returns:
    The decoded JSON printed by the program.
  """
  workdir = test_case.create_tempdir().full_path
  env = {
      k: v
      for k, v in os.environ.items()
      if k not in ('PYTHONPATH', 'PYTHONSTARTUP', 'PYTHONHOME')
  }
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  result = subprocess.run(
      [sys.executable, '-u', testdata_path('fresh_process_runner.py'),
       json.dumps(list(block_modules)), testdata_path(program),
       json.dumps(list(args))],
      cwd=workdir,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
      check=False,
  )
  if result.returncode != 0:
    test_case.fail(
        'Fresh process failed ({}):\n{}\n{}'.format(
            result.returncode, result.stdout[-3000:], result.stderr[-6000:]
        )
    )
  return json.loads(result.stdout.strip().splitlines()[-1])


def numpy_nest(nest: Any) -> Any:
  return tf.nest.map_structure(lambda t: np.asarray(t).tolist(), nest)


VARIABLES_DATA_FILE = 'variables/variables.data-00000-of-00001'
VARIABLES_INDEX_FILE = 'variables/variables.index'


def remove_manifest(path: str) -> None:
  """Makes the export `path` look like one of upstream's saver.

  Removes the top-level manifest and marker and the versions directory, so
  readers read the top-level files, unchecked by a manifest.

  Args:
    path: An export directory written by `PolicySaver`.
  """
  for name in ('export_manifest.json', 'export_complete'):
    tf.io.gfile.remove(os.path.join(path, name))
  versions = os.path.join(path, export_publish.VERSIONS_DIRNAME)
  if tf.io.gfile.exists(versions):
    tf.io.gfile.rmtree(versions)


def current_files(path: str) -> str:
  """The directory holding the files readers read for the export `path`."""
  return export_publish.current_version(path).path


def truncate_file(path: str, name: str) -> None:
  """Truncates the file `name` of the export `path` to half its size."""
  with tf.io.gfile.GFile(os.path.join(path, name), 'rb') as f:
    data = f.read()
  with tf.io.gfile.GFile(os.path.join(path, name), 'wb') as f:
    f.write(data[:len(data) // 2])


def flip_bit(path: str, name: str) -> None:
  """Flips one bit in the middle of the file `name` of the export `path`."""
  with tf.io.gfile.GFile(os.path.join(path, name), 'rb') as f:
    data = bytearray(f.read())
  data[len(data) // 2] ^= 0x10
  with tf.io.gfile.GFile(os.path.join(path, name), 'wb') as f:
    f.write(bytes(data))


# `damage_export` cases for an export, as `parameterized.named_parameters`.
EXPORT_DAMAGE_CASES = tuple((case, case) for case in (
    'missing_path', 'not_an_export', 'incomplete', 'truncated_saved_model_pb',
    'garbled_policy_specs', 'truncated_variables', 'flipped_variables',
    'truncated_variables_index', 'flipped_variables_with_manifest',
    'manifest_mismatch'))


def damage_export(case: str, path: str) -> Any:
  """Damages the export or checkpoint at `path` in the way `case` names.

  Args:
    case: One of 'missing_path', 'not_an_export', 'not_a_checkpoint',
      'incomplete', 'truncated_saved_model_pb', 'garbled_policy_specs',
      'truncated_variables', 'flipped_variables', 'truncated_variables_index',
      'flipped_variables_with_manifest', 'manifest_mismatch'. Damage that the
      integrity manifest would report first is applied to a copy without a
      manifest (nor versions), so the reader's own check of that file is
      what is tested; damage with the manifest is applied to the current
      version, the files readers read.
      The manifest checks the variables' data shard by size only (its
      tensors carry CRC32C checksums), so a flipped bit there is found by
      the restore even with a manifest.
    path: A local or `ram://` export directory (or checkpoint directory).

  Returns:
    `(the export_errors type expected, the file its message names or None)`.

  Raises:
    ValueError: For an unknown `case`.
  """
  if case == 'missing_path':
    tf.io.gfile.rmtree(path)
    return export_errors.ExportNotFoundError, None
  if case == 'not_an_export':
    remove_manifest(path)
    tf.io.gfile.remove(os.path.join(path, 'saved_model.pb'))
    return export_errors.NotAnExportError, 'saved_model.pb'
  if case == 'not_a_checkpoint':
    remove_manifest(path)
    tf.io.gfile.remove(os.path.join(path, VARIABLES_INDEX_FILE))
    return export_errors.NotAnExportError, VARIABLES_INDEX_FILE
  if case == 'incomplete':
    tf.io.gfile.remove(os.path.join(current_files(path), 'export_complete'))
    return export_errors.NotAnExportError, 'export_complete'
  if case == 'truncated_saved_model_pb':
    remove_manifest(path)
    truncate_file(path, 'saved_model.pb')
    return export_errors.CorruptExportError, 'saved_model.pb'
  if case == 'garbled_policy_specs':
    remove_manifest(path)
    with tf.io.gfile.GFile(
        os.path.join(path, 'policy_specs.pbtxt'), 'w') as f:
      f.write('dict_value { fields { key: "collect_data_spec" value {{{ \x00')
    return export_errors.CorruptExportError, 'policy_specs.pbtxt'
  if case == 'truncated_variables':
    remove_manifest(path)
    truncate_file(path, VARIABLES_DATA_FILE)
    return export_errors.CorruptExportError, VARIABLES_DATA_FILE
  if case == 'flipped_variables':
    remove_manifest(path)
    flip_bit(path, VARIABLES_DATA_FILE)
    return export_errors.CorruptExportError, VARIABLES_DATA_FILE
  if case == 'truncated_variables_index':
    remove_manifest(path)
    truncate_file(path, VARIABLES_INDEX_FILE)
    return export_errors.CorruptExportError, VARIABLES_INDEX_FILE
  if case == 'flipped_variables_with_manifest':
    flip_bit(current_files(path), VARIABLES_DATA_FILE)
    return export_errors.CorruptExportError, VARIABLES_DATA_FILE
  if case == 'manifest_mismatch':
    flip_bit(current_files(path), VARIABLES_INDEX_FILE)
    return export_errors.ManifestMismatchError, VARIABLES_INDEX_FILE
  raise ValueError('Unknown damage case: {!r}'.format(case))


def assert_one_line_error(test_case: tf.test.TestCase, error: Exception,
                          path: str, filename: Any) -> None:
  """Asserts `error`'s message is one line naming `path` and `filename`."""
  message = str(error)
  test_case.assertNotIn('\n', message)
  test_case.assertIn(path, message)
  if filename:
    test_case.assertIn(filename, message)
