# coding=utf-8
"""Converted models stored in an export, and how equivalent each one is.

`PolicySaver(..., converted_formats=('tflite', 'onnx'))` converts the
`action` signature when it writes an export, checks each converted model
against the SavedModel once, and stores the models and the verdict in the
export (`converted/action.<format>` and `converted/equivalence.json`, both
covered by the integrity manifest). Runtimes read the record instead of
converting and probing at every load and update: `saved_policy`'s `'auto'`
backend picks a stored model only when its record says it is equivalent.
Upstream tf-agents 0.19.0 stores no converted model and records nothing.

Equivalence, one notion per policy kind:

* `bit_exact` (deterministic, stateless policies): every output of the
  converted model equals the SavedModel's bit for bit on probe batches
  sampled from the signature's inputs (floats uniform in [-2, 2], step types
  in {0, 1, 2}, other integers in {0, 1}).
* `same_actions_state_bounded` (deterministic policies with a state, e.g.
  LSTMs): over an episode of `EPISODE_STEPS` steps on random observations,
  each runtime feeding its own state back, every action output is equal and
  the largest absolute difference of the states stays within
  `STATE_TOLERANCE`; the record gives that largest difference.
* `not_checked` (stochastic policies): the two runtimes draw from different
  random streams, so no sample-wise check applies; never picked by `'auto'`.

The models keep their weights as replaceable values (TFLite resource
variables with a `set_weights` signature; ONNX initializers): the record
names the digest of the variables they were converted with
(`weights_digest`), and a runtime loading a version whose variables differ
(a later `save_checkpoint`) gives the model the version's variables
(`model_weights`) without converting again.
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Text, Tuple

import numpy as np
import tensorflow as tf

from tf_agents.policies import export_conversion

TFLITE = 'tflite'
ONNX = 'onnx'
FORMATS = (TFLITE, ONNX)

DIRECTORY = 'converted'
RECORD_FILE = DIRECTORY + '/equivalence.json'

BIT_EXACT = 'bit_exact'
SAME_ACTIONS_STATE_BOUNDED = 'same_actions_state_bounded'
NOT_CHECKED = 'not_checked'

EPISODE_STEPS = 100
STATE_TOLERANCE = 1e-4

_RECORD_VERSION = 1
_PROBE_SEED = 20261202
_PROBE_BATCH_SIZES = (1, 5)
# The checkpoint key of `model_variables[i]` (exports and checkpoints).
MODEL_VARIABLE_KEY = 'model_variables/{}/.ATTRIBUTES/VARIABLE_VALUE'
_INDEX_FILE = os.path.join(tf.saved_model.VARIABLES_DIRECTORY,
                           tf.saved_model.VARIABLES_FILENAME + '.index')
# Op types that make a function stochastic or stateful.
_NONDETERMINISTIC_OP = re.compile(
    r'Random|Multinomial|TruncatedNormal|^Rng|^StatefulUniform|'
    r'^StatefulStandardNormal|^StatefulTruncatedNormal|Assign|Scatter|'
    r'^RandomShuffle|Sobol'
)

Runner = Callable[[Dict[Text, np.ndarray]], Dict[Text, np.ndarray]]


def model_file(format_name: Text) -> Text:
  """The stored model of `format_name`, relative to the export."""
  return '{}/action.{}'.format(DIRECTORY, format_name)


@dataclasses.dataclass(frozen=True)
class FormatRecord:
  """What was checked of one stored model.

  Attributes:
    file: The model's path relative to the export.
    notion: `BIT_EXACT`, `SAME_ACTIONS_STATE_BOUNDED` or `NOT_CHECKED`.
    equivalent: Whether the model met its notion.
    max_abs_deviation: The largest absolute difference of any output (of the
      state, for `SAME_ACTIONS_STATE_BOUNDED`) seen in the check.
    detail: One line on the outcome.
    weight_names: The model's replaceable weights (`export_conversion.
      weight_name(i)` of `model_variables[i]`) when the format names them
      (ONNX: the variables the signature reads); None for TFLite, whose
      `set_weights` takes every model variable.
  """

  file: Text
  notion: Text
  equivalent: bool
  max_abs_deviation: Optional[float]
  detail: Text
  weight_names: Optional[List[Text]] = None


@dataclasses.dataclass(frozen=True)
class Record:
  """The converted models of an export.

  Attributes:
    signature: The converted signature.
    weights_digest: `weights_digest` of the variables the models hold.
    formats: `FormatRecord` per format name.
  """

  signature: Text
  weights_digest: Text
  formats: Dict[Text, FormatRecord]

  def equivalent(self, format_name: Text) -> bool:
    entry = self.formats.get(format_name)
    return entry is not None and entry.equivalent


def is_deterministic(function: Any) -> bool:
  """False if a concrete function (or one it calls) has random/assign ops."""
  graph_def = function.graph.as_graph_def()
  op_types = {node.op for node in graph_def.node}
  for library_function in graph_def.library.function:
    op_types.update(node.op for node in library_function.node_def)
  return not any(_NONDETERMINISTIC_OP.search(op) for op in op_types)


def weights_digest(export_dir: Text) -> Text:
  """SHA-256 of the variables' index, which holds each tensor's CRC32C."""
  with tf.io.gfile.GFile(os.path.join(export_dir, _INDEX_FILE), 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def model_weights(export_dir: Text) -> List[np.ndarray]:
  """The values of `model_variables`, in order, read from the checkpoint.

  Args:
    export_dir: An export or checkpoint directory (one version).

  Returns:
    One array per model variable (the order of `export_conversion`'s
    `weight_name(i)`).
  """
  reader = tf.compat.v1.train.NewCheckpointReader(
      os.path.join(export_dir, tf.saved_model.VARIABLES_DIRECTORY,
                   tf.saved_model.VARIABLES_FILENAME))
  values = []
  while reader.has_tensor(MODEL_VARIABLE_KEY.format(len(values))):
    values.append(reader.get_tensor(MODEL_VARIABLE_KEY.format(len(values))))
  return values


def read(export_dir: Text) -> Optional[Record]:
  """The record of `export_dir` (one version), or None if it has none."""
  path = os.path.join(export_dir, RECORD_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path, 'r') as f:
    data = json.load(f)
  return Record(
      signature=data['signature'],
      weights_digest=data['weights_digest'],
      formats={name: FormatRecord(**entry)
               for name, entry in data['formats'].items()},
  )


def _tflite_runner(model: bytes, signature_key: Text) -> Runner:
  interpreter = tf.lite.Interpreter(model_content=model)
  runner = interpreter.get_signature_runner(signature_key)
  return lambda inputs: runner(**inputs)


def _onnx_runner(model: bytes) -> Runner:
  import onnxruntime  # pylint: disable=g-import-not-at-top
  session = onnxruntime.InferenceSession(
      model, providers=['CPUExecutionProvider'])
  names = [output.name for output in session.get_outputs()]
  prefix = export_conversion.NEXT_PREFIX

  def run(inputs):
    values = session.run(names, inputs)
    # Back to the signature's output keys (`next_<key>` is state `<key>`).
    return {(n[len(prefix):] if n.startswith(prefix) and n[len(prefix):]
             in inputs else n): v for n, v in zip(names, values)}

  return run


def _sample(spec: tf.TensorSpec, key: Text, batch: int,
            rng: np.random.RandomState) -> np.ndarray:
  shape = (batch,) + tuple(spec.shape[1:])
  dtype = spec.dtype.as_numpy_dtype
  if key.endswith('step_type'):
    return rng.randint(0, 3, size=shape).astype(dtype)
  if spec.dtype.is_floating:
    return rng.uniform(-2.0, 2.0, size=shape).astype(dtype)
  if spec.dtype.is_bool:
    return rng.randint(0, 2, size=shape).astype(dtype)
  return rng.randint(0, 2, size=shape).astype(dtype)


def _largest_difference(first: np.ndarray, second: np.ndarray) -> float:
  first = np.asarray(first)
  second = np.asarray(second)
  if first.dtype.kind not in 'fiub':
    return 0.0 if np.array_equal(first, second) else float('inf')
  return float(np.max(np.abs(first.astype(np.float64) -
                             second.astype(np.float64)), initial=0.0))


def _check_stateless(
    reference: Runner, converted: Runner, specs: Dict[Text, tf.TensorSpec]
) -> FormatRecord:
  rng = np.random.RandomState(_PROBE_SEED)
  fixed = next(iter(specs.values())).shape[0] if specs else None
  largest = 0.0
  for batch in ([fixed] if fixed else _PROBE_BATCH_SIZES):
    inputs = {k: _sample(s, k, batch, rng) for k, s in specs.items()}
    expected = reference(inputs)
    actual = converted(inputs)
    for key, value in expected.items():
      if key not in actual or np.asarray(actual[key]).shape != value.shape:
        return FormatRecord('', BIT_EXACT, False, None,
                            'output {!r} missing or reshaped'.format(key))
      largest = max(largest, _largest_difference(value, actual[key]))
  exact = largest == 0.0
  return FormatRecord(
      '', BIT_EXACT, exact, largest,
      'bit for bit on probe batches' if exact else
      'outputs differ by up to {:.3g} on probe batches'.format(largest))


def _check_stateful(
    reference: Runner, converted: Runner, specs: Dict[Text, tf.TensorSpec],
    state_keys: Sequence[Text]
) -> FormatRecord:
  rng = np.random.RandomState(_PROBE_SEED)
  batch = next(iter(specs.values())).shape[0] or 1
  states = [{k: np.zeros((batch,) + tuple(specs[k].shape[1:]),
                         specs[k].dtype.as_numpy_dtype) for k in state_keys}
            for _ in range(2)]
  largest = 0.0
  for step in range(EPISODE_STEPS):
    inputs = {k: _sample(s, k, batch, rng) for k, s in specs.items()
              if k not in state_keys}
    for k, s in specs.items():
      if k.endswith('step_type'):
        inputs[k] = np.full((batch,), 0 if step == 0 else 1,
                            s.dtype.as_numpy_dtype)
    outputs = [run(dict(inputs, **state))
               for run, state in zip((reference, converted), states)]
    for key, value in outputs[0].items():
      if key in state_keys:
        largest = max(largest, _largest_difference(value, outputs[1][key]))
      elif key.split('/')[0] == 'action' and not np.array_equal(
          value, outputs[1].get(key)):
        return FormatRecord(
            '', SAME_ACTIONS_STATE_BOUNDED, False, largest,
            'action {!r} differs at step {}'.format(key, step))
    states = [{k: np.asarray(o[k]) for k in state_keys} for o in outputs]
  bounded = largest <= STATE_TOLERANCE
  return FormatRecord(
      '', SAME_ACTIONS_STATE_BOUNDED, bounded, largest,
      'same actions over {} steps, state within {:.3g}{}'.format(
          EPISODE_STEPS, largest,
          '' if bounded else ' (over {:g})'.format(STATE_TOLERANCE)))


def check(loaded: Any, model: bytes, format_name: Text,
          signature_key: Text = 'action') -> FormatRecord:
  """Checks a converted model of `loaded`'s signature against it.

  Args:
    loaded: The loaded export (its variables as the model was converted).
    model: The converted model.
    format_name: `TFLITE` or `ONNX`.
    signature_key: The converted signature.

  Returns:
    The `FormatRecord` (its `file` empty).
  """
  signature = loaded.signatures[signature_key]
  specs = signature.structured_input_signature[1]
  state_keys = [k for k in signature.structured_outputs if k in specs]
  if not is_deterministic(signature):
    return FormatRecord('', NOT_CHECKED, False, None,
                        'stochastic: runtimes draw different random streams')

  def reference(inputs):
    return {k: v.numpy() for k, v in signature(**inputs).items()}

  converted = (_tflite_runner(model, signature_key) if format_name == TFLITE
               else _onnx_runner(model))
  try:
    if state_keys:
      return _check_stateful(reference, converted, specs, state_keys)
    return _check_stateless(reference, converted, specs)
  except Exception as e:  # pylint: disable=broad-except
    # TF, TFLite and onnxruntime errors share no public type.
    return FormatRecord('', NOT_CHECKED, False, None,
                        'the check failed: {}: {}'.format(
                            type(e).__name__, ' '.join(str(e).split())[:200]))


def convert(loaded: Any, format_name: Text,
            signature_key: Text = 'action') -> Tuple[bytes, Optional[List[Text]]]:
  """Converts `loaded`'s signature with replaceable weights.

  Args:
    loaded: The loaded export.
    format_name: `TFLITE` or `ONNX`.
    signature_key: The signature to convert.

  Returns:
    `(model, weight_names)` (see `FormatRecord.weight_names`).

  Raises:
    ValueError: `format_name` is unknown.
  """
  if format_name == TFLITE:
    return export_conversion.tflite_model_with_weights(
        loaded, loaded.signatures[signature_key]), None
  if format_name == ONNX:
    model, report = export_conversion.convert_action_to_onnx(
        loaded, signature_key)
    return model, list(report.weight_names)
  raise ValueError('format must be one of {}, got {!r}.'.format(
      FORMATS, format_name))


def write(export_dir: Text, formats: Sequence[Text],
          signature_key: Text = 'action') -> Record:
  """Converts, checks and stores the models of a written export.

  Args:
    export_dir: A directory holding a complete SavedModel (e.g. a staging
      directory about to be published).
    formats: Format names, each in `FORMATS`.
    signature_key: The signature to convert.

  Returns:
    The record written to `RECORD_FILE`.

  Raises:
    ValueError: A format is unknown or a conversion fails.
  """
  loaded = tf.saved_model.load(export_dir)
  entries = {}
  for format_name in formats:
    try:
      model, weight_names = convert(loaded, format_name, signature_key)
    except Exception as e:  # pylint: disable=broad-except
      # Converter errors have no public common type.
      raise ValueError('Converting {}[{}] to {} failed: {}: {}'.format(
          export_dir, signature_key, format_name, type(e).__name__,
          ' '.join(str(e).split())[:300])) from e
    path = os.path.join(export_dir, model_file(format_name))
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, 'wb') as f:
      f.write(model)
    entries[format_name] = dataclasses.replace(
        check(loaded, model, format_name, signature_key),
        file=model_file(format_name), weight_names=weight_names)
  record = Record(signature_key, weights_digest(export_dir), entries)
  with tf.io.gfile.GFile(os.path.join(export_dir, RECORD_FILE), 'w') as f:
    json.dump({'record_version': _RECORD_VERSION,
               'signature': record.signature,
               'weights_digest': record.weights_digest,
               'formats': {k: dataclasses.asdict(v)
                           for k, v in entries.items()}}, f, indent=2,
              sort_keys=True)
  return record
