# coding=utf-8
"""The export contract: every name an export's writer and readers share.

New module (upstream tf-agents 0.19.0 spells these names separately in its
saver, its loader and `SavedModelPyTFEagerPolicy`). `policy_saver` writes
exports with these names; `saved_policy`, `policy_loader`, `export_verify`,
`export_equivalence` and the CLI read them from here, so a change on the
writer's side changes the readers too (`export_contract_test` saves exports
of several shapes and checks that every key the writer produced is one the
readers look for).

What it holds:

* File names of an export (`saved_model.pb`, `policy_specs.pbtxt`, the
  variables' checkpoint, TensorFlow's fingerprint, the recorded reference
  outputs) and `variables_prefix`.
* Signature names (`action`, `get_initial_state`, ...).
* The flat-key rules of the signatures: the time step's inputs are
  `0/<path>`; the policy state's are `state/<path>` (`1/<path>` in exports
  written with `use_nest_path_signatures=False` and by older savers);
  outputs are `action/<path>`, `info/<path>` and the state's keys, so a
  state output feeds back unchanged. TensorFlow turns an input key that is
  no Python name into an argument name (`signature_key`).
* Checkpoint keys of the model variables and the train step.
* The policy specs: the five specs split from `collect_data_spec` and
  `policy_state_spec` (`split_specs`), as `policy_specs.pbtxt` stores them.
"""

import os
from typing import Any, Dict, List, Optional, Text

import tensorflow as tf

from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

# Files.
SAVED_MODEL_FILENAME = tf.saved_model.SAVED_MODEL_FILENAME_PB
POLICY_SPECS_PBTXT = 'policy_specs.pbtxt'
FINGERPRINT_FILENAME = 'fingerprint.pb'
# Outputs of `action` on fixed inputs, recorded by the saver for `verify`.
REFERENCE_IO = 'reference_io.npz'
# An optional TFLite model of `action` in the export's assets.
TFLITE_MODEL_FILENAME = 'action.tflite'
VARIABLES_INDEX = '{}/{}.index'.format(tf.saved_model.VARIABLES_DIRECTORY,
                                       tf.saved_model.VARIABLES_FILENAME)
VARIABLES_DATA = '{}/{}.data-00000-of-00001'.format(
    tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME)

# Signatures.
ACTION = 'action'
ACTION_FROM_OBSERVATION = 'action_from_observation'
GET_INITIAL_STATE = 'get_initial_state'
GET_TRAIN_STEP = 'get_train_step'
GET_METADATA = 'get_metadata'
REQUIRED_SIGNATURES = (ACTION, GET_INITIAL_STATE, GET_TRAIN_STEP,
                       GET_METADATA)

# Flat keys.
TIME_STEP_PREFIX = '0'
STATE_PREFIX = 'state'
LEGACY_STATE_PREFIX = '1'
ACTION_PREFIX = 'action'
INFO_PREFIX = 'info'
TRAIN_STEP_KEY = 'train_step'
BATCH_SIZE_KEY = 'batch_size'

# Checkpoint keys (exports and `save_checkpoint` alike).
MODEL_VARIABLE_KEY = 'model_variables/{}/.ATTRIBUTES/VARIABLE_VALUE'
TRAIN_STEP_CHECKPOINT_KEY = 'train_step/.ATTRIBUTES/VARIABLE_VALUE'

# The policy specs, as `split_specs` returns them.
SPEC_KEYS = ('collect_data_spec', 'time_step_spec', 'action_spec',
             'policy_state_spec', 'info_spec')


def variables_prefix(path: Text) -> Text:
  """The checkpoint prefix of an export or checkpoint directory."""
  return os.path.join(path, tf.saved_model.VARIABLES_DIRECTORY,
                      tf.saved_model.VARIABLES_FILENAME)


def signature_key(name: Text) -> Text:
  """The key TensorFlow gives a flat-signature input named `name`.

  `tf.function` turns every input name into a Python parameter name: each
  non-alphanumeric character becomes `_`, and `arg_` is prepended unless the
  result starts with a letter (e.g. `0/step_type` -> `arg_0_step_type`).
  Output keys are used as given, so names fed back from outputs to inputs
  must already have this form.

  Args:
    name: A spec name.

  Returns:
    The signature key for `name`.
  """
  swapped = ''.join(c if c.isalnum() else '_' for c in name)
  return swapped if swapped[:1].isalpha() else 'arg_' + swapped


def joined(prefix: Text, path: Text, separator: Text = '/') -> Text:
  """`prefix<separator>path`, or `prefix` for the root (empty path)."""
  return '{}{}{}'.format(prefix, separator, path) if path else prefix


def state_key(path: Text) -> Text:
  """The flat key of the policy state leaf at `path` (inputs and outputs)."""
  return signature_key(joined(STATE_PREFIX, path))


def time_step_names(path: Text, spec_name: Optional[Text] = None
                   ) -> List[Text]:
  """Names an `action` input of the time step leaf at `path` may have."""
  return [n for n in (joined(TIME_STEP_PREFIX, path), spec_name) if n]


def state_names(path: Text, spec_name: Optional[Text] = None) -> List[Text]:
  """Names a policy state leaf at `path` may have, best first.

  Args:
    path: The leaf's path in the policy state spec ('' for a single leaf).
    spec_name: The spec's own name (legacy exports name leaves by it).

  Returns:
    The nest-path key, its unsanitized form, the legacy `1/<path>` name and
    `spec_name`.
  """
  return [n for n in (state_key(path), joined(STATE_PREFIX, path),
                      joined(LEGACY_STATE_PREFIX, path), spec_name) if n]


def output_names(prefix: Text, path: Text,
                 spec_name: Optional[Text] = None) -> List[Text]:
  """Names an `action` output of the action or info leaf at `path` may have.

  Args:
    prefix: `ACTION_PREFIX` or `INFO_PREFIX`.
    path: The leaf's path.
    spec_name: The spec's own name.

  Returns:
    The candidate names, best first.
  """
  return [n for n in (joined(prefix, path), spec_name) if n]


def split_specs(policy_specs: Dict[Text, Any]) -> Dict[Text, Any]:
  """The five policy specs from what `policy_specs.pbtxt` stores.

  Args:
    policy_specs: `{'collect_data_spec': Trajectory spec,
      'policy_state_spec': nest}` (the state may be missing: `()`).

  Returns:
    `{key: nest}` for every key of `SPEC_KEYS`; the time step spec is a
    `TimeStep`.
  """
  data = policy_specs['collect_data_spec']
  return {
      'collect_data_spec': data,
      'time_step_spec': ts.TimeStep(
          step_type=data.step_type,
          reward=data.reward,
          discount=data.discount,
          observation=data.observation,
      ),
      'action_spec': data.action,
      'policy_state_spec': policy_specs.get('policy_state_spec', ()),
      'info_spec': data.policy_info,
  }


def read_specs_pbtxt(export_dir: Text) -> Dict[Text, Any]:
  """`split_specs` of `export_dir/policy_specs.pbtxt` (`TensorSpec`s).

  Args:
    export_dir: An export directory (one version).

  Returns:
    As `split_specs`.

  Raises:
    tf.errors.NotFoundError: The file is missing.
    Other errors of `tensor_spec.from_pbtxt_file`: it cannot be parsed.
  """
  return split_specs(tensor_spec.from_pbtxt_file(
      os.path.join(export_dir, POLICY_SPECS_PBTXT)))
