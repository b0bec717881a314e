# coding=utf-8
"""Checks of the arguments of `PolicySaver`'s constructor.

New in this repository (not upstream's): each function checks one argument
of `policy_saver.PolicySaver` (or the process it runs in) and returns it
normalized, or raises the error the saver documents, naming the offending
value, before anything is traced or written.
"""

import numbers
import threading
from typing import Any, Dict, Optional, Text, Tuple

import numpy as np
import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_equivalence
from tf_agents.policies import saver_signatures
from tf_agents.policies import tf_policy
from tf_agents.typing import types



def _eager_enabled_process_wide() -> bool:
  """Whether eager execution is the process-wide default.

  `tf.executing_eagerly()` is also False under `tf.Graph().as_default()` in a
  TF2 process. A new thread starts with no graph on its (thread-local) graph
  stack and in the process-wide default execution mode, so it tells the two
  apart with public APIs only.

  Returns:
    False iff eager execution was disabled process-wide (TF1 graph mode).
  """
  result = []
  thread = threading.Thread(
      target=lambda: result.append(tf.executing_eagerly())
  )
  thread.start()
  thread.join()
  return bool(result and result[0])


def check_process_and_policy(policy: Any) -> None:
  """Raises if eager execution is off process-wide or `policy` is no TFPolicy.

  Args:
    policy: The `policy` argument.

  Raises:
    NotImplementedError: Eager execution is disabled process-wide (TF1 graph
      mode); checked first.
    TypeError: `policy` is not a `TFPolicy`.
  """
  if not _eager_enabled_process_wide():
    raise NotImplementedError(
        'PolicySaver requires TF2 behaviour: eager execution is disabled '
        'process-wide (tf.compat.v1.disable_eager_execution() or TF1 graph '
        'mode). Building inside `with tf.Graph().as_default():` in an eager '
        'process is supported.'
    )
  if not isinstance(policy, tf_policy.TFPolicy):
    raise TypeError(
        'policy must be a tf_agents TFPolicy, got {!r} of type {}.'.format(
            policy, type(policy).__name__
        )
    )


# The exported `get_initial_state` takes an int32 `batch_size`.
_MAX_BATCH_SIZE = 2**31 - 1


def validated_batch_size(batch_size: Any) -> Optional[int]:
  """Returns `batch_size` as a Python int (or None), or raises ValueError."""
  if batch_size is None:
    return None
  if isinstance(batch_size, (bool, np.bool_)) or not isinstance(
      batch_size, numbers.Integral
  ):
    raise ValueError(
        'batch_size must be None or an integer > 0, got {!r} of type '
        '{}.'.format(batch_size, type(batch_size).__name__)
    )
  if batch_size < 1:
    raise ValueError(
        'batch_size must be None or an integer > 0, got {!r}.'.format(
            batch_size
        )
    )
  if batch_size > _MAX_BATCH_SIZE:
    raise ValueError(
        'batch_size must be at most {} (2**31 - 1; the exported '
        'get_initial_state takes an int32 batch_size), got {!r}.'.format(
            _MAX_BATCH_SIZE, batch_size
        )
    )
  return int(batch_size)


def validated_max_to_keep(max_to_keep: Any) -> Optional[int]:
  """Returns `max_to_keep` if it is None or an integer > 0, else raises.

  Args:
    max_to_keep: The `max_to_keep` argument.

  Returns:
    `max_to_keep`, unchanged.

  Raises:
    ValueError: It is not None or an integer > 0.
  """
  if max_to_keep is not None and (
      isinstance(max_to_keep, bool)
      or not isinstance(max_to_keep, numbers.Integral) or max_to_keep < 1):
    raise ValueError(
        'max_to_keep must be None or an integer > 0, got {!r}.'.format(
            max_to_keep))
  return max_to_keep


def validated_converted_formats(converted_formats: Any) -> Tuple[Text, ...]:
  """Returns `converted_formats` as a tuple of known formats, or raises.

  Args:
    converted_formats: The `converted_formats` argument.

  Returns:
    Its formats, as a tuple.

  Raises:
    ValueError: It is a string or holds an unknown format.
  """
  unknown = sorted(set(converted_formats) - set(export_equivalence.FORMATS))
  if isinstance(converted_formats, str) or unknown:
    raise ValueError(
        'converted_formats must be a sequence of {}, got {!r}.'.format(
            export_equivalence.FORMATS, converted_formats))
  return tuple(converted_formats)


def noise_seed(seed: Optional[types.Seed]) -> Optional[int]:
  """The seed of converted stochastic models: `seed` if an integer."""
  return (int(seed) if isinstance(seed, numbers.Integral)
          and not isinstance(seed, bool) else None)


def check_specs(policy: tf_policy.TFPolicy, use_nest_paths: bool) -> None:
  """Raises ValueError for missing or colliding names in spec-name mode."""
  if use_nest_paths:
    return
  problems = saver_signatures.name_problems([
      ('time_step_spec', policy.time_step_spec),
      ('policy_state_spec', policy.policy_state_spec),
  ])
  problems += saver_signatures.name_problems([
      ('action_spec', policy.action_spec),
      ('policy_state_spec', policy.policy_state_spec),
      ('info_spec', policy.info_spec),
  ])
  if problems:
    raise ValueError(
        'With use_nest_path_signatures=False every spec of time_step_spec, '
        'action_spec, policy_state_spec and info_spec needs a unique name '
        '(among the action inputs and among its outputs): '
        + '; '.join(sorted(set(problems)))
        + '.'
    )


def validated_train_step(train_step: Any) -> tf.Variable:
  """Returns the train step variable, creating one if needed."""
  if train_step is None:
    if not tf.executing_eagerly():
      raise ValueError(
          'train_step is required when building in graph mode and must be a '
          '`tf.Variable`: got None.'
      )
    return tf.Variable(
        -1,
        trainable=False,
        dtype=tf.int64,
        shape=(),
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        name='train_step',
    )
  if not isinstance(train_step, tf.Variable):
    raise ValueError(
        'train_step must be a tf.Variable, got {!r} of type {}.'.format(
            train_step, type(train_step).__name__
        )
    )
  dtype = train_step.dtype.base_dtype
  if not dtype.is_integer:
    raise TypeError(
        'train_step must be an integer tf.Variable, got {!r} of dtype '
        '{}.'.format(train_step.name, dtype.name)
    )
  if train_step.shape.rank != 0:
    raise ValueError(
        'train_step must be a scalar tf.Variable, got {!r} of shape '
        '{}.'.format(train_step.name, train_step.shape)
    )
  return train_step


def validated_metadata(metadata: Any) -> Dict[Text, tf.Variable]:
  """Checks `metadata` is a dict of non-empty str -> `tf.Variable`."""
  if metadata is None:
    return {}
  if not isinstance(metadata, dict):
    raise TypeError(
        'metadata must be a dict of name -> tf.Variable, got {!r} of type '
        '{}.'.format(metadata, type(metadata).__name__)
    )
  for key, value in metadata.items():
    if not isinstance(key, str):
      raise TypeError(
          'metadata keys must be strings, got {!r} of type {}.'.format(
              key, type(key).__name__
          )
      )
    if not key:
      raise ValueError(
          'metadata keys must be non-empty strings, got {!r}.'.format(key)
      )
    if not isinstance(value, tf.Variable):
      raise TypeError(
          'metadata values must be tf.Variable, got {!r} of type {} for key '
          '{!r}.'.format(value, type(value).__name__, key)
      )
  return dict(metadata)


def input_fn_spec_names(
    input_spec: types.NestedTensorSpec, use_nest_paths: bool
) -> types.NestedTensorSpec:
  """Names of the `action` inputs when `input_fn_and_spec` is given."""
  problems = saver_signatures.name_problems(
      [('input_fn_and_spec[1]', input_spec)])
  if not problems:
    return saver_signatures.spec_named(input_spec)
  if use_nest_paths:
    return saver_signatures.prefixed_path_names(
        input_spec, export_contract.TIME_STEP_PREFIX)
  raise ValueError(
      'With use_nest_path_signatures=False every spec of input_fn_and_spec '
      'needs a unique name: ' + '; '.join(problems) + '.'
  )
