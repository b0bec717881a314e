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
* `same_distribution` (stochastic policies converted with their noise as
  inputs, `export_noise`: categorical incl. Boltzmann and epsilon-greedy,
  normal and tanh-squashed normal): the runtimes draw from different random
  streams, so samples are compared instead. Each of `PROBE_ROWS` probe
  inputs is repeated `SAMPLES` times in one batch; the SavedModel's `action`
  and the converted model (fed noise from a fixed-seed NumPy generator) each
  draw that batch, and every output element of every probe row is tested:
  integer outputs (categorical actions) by a chi-square homogeneity test
  (categories drawn fewer than 10 times pooled), float outputs by a
  two-sample Kolmogorov-Smirnov test, each at `SIGNIFICANCE_LEVEL` (1e-3)
  divided by the number of tests (Bonferroni). Elements constant in both
  (e.g. a recurrent state) must agree within `STATE_TOLERANCE`. The record
  gives the tests, the level, the sample sizes, the largest KS and
  chi-square statistics and the smallest p-value (`statistics`), and the
  noise inputs a runtime must feed (`noise_inputs`: name, `uniform` on
  [0, 1) or `standard_normal`, shape after the batch dimension, dtype) and
  the saver's seed to seed them with (`noise_seed`). Exports with a fixed
  batch size are `not_checked` (no independent samples to draw).
* `not_checked` (other stochastic policies, converted with their random ops
  and select TF ops): no sample-wise check applies; never picked by
  `'auto'`.

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

from absl import logging
import numpy as np
import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_conversion
from tf_agents.policies import export_noise

TFLITE = 'tflite'
ONNX = 'onnx'
FORMATS = (TFLITE, ONNX)

DIRECTORY = 'converted'
RECORD_FILE = DIRECTORY + '/equivalence.json'

BIT_EXACT = 'bit_exact'
SAME_ACTIONS_STATE_BOUNDED = 'same_actions_state_bounded'
SAME_DISTRIBUTION = 'same_distribution'
NOT_CHECKED = 'not_checked'

EPISODE_STEPS = 100
STATE_TOLERANCE = 1e-4
# `SAME_DISTRIBUTION`: draws per probe row and runtime, probe rows, and the
# family-wise significance level of all tests of one check (Bonferroni).
SAMPLES = 2000
PROBE_ROWS = 3
SIGNIFICANCE_LEVEL = 1e-3

_RECORD_VERSION = 1
_PROBE_SEED = 20261202
_PROBE_BATCH_SIZES = (1, 5)
_NOISE_SEED = 20261206
# Categories drawn fewer times than this (both runtimes together) are pooled
# into one, so the chi-square approximation holds.
_MIN_CATEGORY_COUNT = 10
# The checkpoint key of `model_variables[i]` (exports and checkpoints).
MODEL_VARIABLE_KEY = export_contract.MODEL_VARIABLE_KEY
_INDEX_FILE = export_contract.VARIABLES_INDEX
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
    noise_inputs: For a stochastic model converted with its noise as inputs
      (`export_noise`): one dict per noise input, `{'name', 'distribution'
      ('uniform' on [0, 1) or 'standard_normal'), 'shape' (after the batch
      dimension), 'dtype'}`, which a runtime draws and feeds at every step;
      else None.
    noise_seed: The seed the export's `PolicySaver` was given, which
      runtimes seed their noise generator with (None: unseeded).
    statistics: For `SAME_DISTRIBUTION`: the tests, the significance level,
      the sample sizes and the worst statistic and p-value.
  """

  file: Text
  notion: Text
  equivalent: bool
  max_abs_deviation: Optional[float]
  detail: Text
  weight_names: Optional[List[Text]] = None
  noise_inputs: Optional[List[Dict[Text, Any]]] = None
  noise_seed: Optional[int] = None
  statistics: Optional[Dict[Text, Any]] = None

  def noise(self) -> List[export_noise.NoiseInput]:
    """The noise inputs as `export_noise.NoiseInput`s (empty: none)."""
    return [export_noise.NoiseInput.from_json(n)
            for n in self.noise_inputs or ()]


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


def is_deterministic_signature(meta_graph: Any, signature_key: Text) -> bool:
  """`is_deterministic` of a SignatureDef, read from a parsed MetaGraphDef.

  For readers that never build the eager function (e.g. a TF1 session):
  walks the graph back from the signature's outputs and every function
  those nodes call, directly or through other functions.

  Args:
    meta_graph: A `MetaGraphDef` (e.g. of `saved_model.pb`).
    signature_key: The signature.

  Returns:
    False if any op reached is random or stateful (as `is_deterministic`).

  Raises:
    KeyError: The signature is missing.
  """
  graph = meta_graph.graph_def
  nodes = {node.name: node for node in graph.node}
  library = {f.signature.name: f for f in graph.library.function}
  pending = [info.name.split(':')[0].lstrip('^') for info in
             meta_graph.signature_def[signature_key].outputs.values()]
  seen_nodes, seen_functions, op_types = set(), set(), set()

  def called(node):
    for value in node.attr.values():
      if value.HasField('func'):
        yield value.func.name
      for function in value.list.func:
        yield function.name

  functions = []
  while pending:
    name = pending.pop()
    if name in seen_nodes or name not in nodes:
      continue
    seen_nodes.add(name)
    node = nodes[name]
    op_types.add(node.op)
    functions.extend(called(node))
    pending.extend(i.split(':')[0].lstrip('^') for i in node.input)
  while functions:
    name = functions.pop()
    if name in seen_functions or name not in library:
      continue
    seen_functions.add(name)
    for node in library[name].node_def:
      op_types.add(node.op)
      functions.extend(called(node))
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
      export_contract.variables_prefix(export_dir))
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


def _ks_statistic(first: np.ndarray, second: np.ndarray) -> float:
  """The two-sample Kolmogorov-Smirnov statistic, up to float rounding.

  The largest gap between the empirical CDFs, where each CDF may be shifted
  by a rounding tolerance (1e-5 of the values' scale): outputs taking a few
  values (e.g. the log-probability of a categorical action) differ between
  runtimes by rounding, which would otherwise count as a CDF gap.

  Args:
    first: Draws of one runtime.
    second: Draws of the other.

  Returns:
    The statistic, in [0, 1].
  """
  first = np.sort(first)
  second = np.sort(second)
  tolerance = 1e-5 * max(1.0, float(np.max(np.abs(first))),
                         float(np.max(np.abs(second))))
  points = np.concatenate([first, second])

  def cdf(sample, at):
    return np.searchsorted(sample, at, side='right') / sample.size

  gap = np.maximum(cdf(first, points) - cdf(second, points + tolerance),
                   cdf(second, points) - cdf(first, points + tolerance))
  return float(max(np.max(gap), 0.0))


def _ks_p_value(statistic: float, n: int, m: int) -> float:
  """Asymptotic p-value of the two-sample KS statistic (Kolmogorov's law)."""
  root = np.sqrt(n * m / (n + m))
  # Stephens' small-sample correction of the asymptotic distribution.
  lam = (root + 0.12 + 0.11 / root) * statistic
  if lam < 0.2:
    return 1.0  # The series converges slowly there; the p-value is ~1.
  k = np.arange(1, 101)
  p = 2.0 * np.sum((-1.0)**(k - 1) * np.exp(-2.0 * k**2 * lam**2))
  return float(np.clip(p, 0.0, 1.0))


def _chi_square(first: np.ndarray, second: np.ndarray) -> Tuple[float, float]:
  """Chi-square test that two samples of categories have one distribution.

  Args:
    first: Categories drawn by one runtime.
    second: Categories drawn by the other.

  Returns:
    `(statistic, p_value)` of the 2 x K homogeneity test, rare categories
    pooled.
  """
  categories, inverse = np.unique(np.concatenate([first, second]),
                                  return_inverse=True)
  counts = np.zeros((2, categories.size))
  np.add.at(counts[0], inverse[:first.size], 1)
  np.add.at(counts[1], inverse[first.size:], 1)
  totals = counts.sum(axis=0)
  rare = totals < _MIN_CATEGORY_COUNT
  if rare.any():
    counts = np.concatenate(
        [counts[:, ~rare], counts[:, rare].sum(axis=1, keepdims=True)],
        axis=1)
    counts = counts[:, counts.sum(axis=0) > 0]
  if counts.shape[1] < 2:
    return 0.0, 1.0
  expected = (counts.sum(axis=1, keepdims=True) * counts.sum(axis=0) /
              counts.sum())
  statistic = float(np.sum((counts - expected)**2 / expected))
  dof = counts.shape[1] - 1
  # The chi-square survival function; TF has the incomplete gamma function.
  p = float(tf.math.igammac(tf.constant(dof / 2.0, tf.float64),
                            tf.constant(statistic / 2.0, tf.float64)))
  return statistic, p


def _check_same_distribution(
    reference: Runner, converted: Runner, specs: Dict[Text, tf.TensorSpec],
    noise: Sequence[export_noise.NoiseInput]
) -> FormatRecord:
  """Compares samples of the two runtimes on fixed probe inputs.

  Each of `PROBE_ROWS` probe inputs is repeated `SAMPLES` times in one
  batch (the SavedModel then draws independent samples even when seeded,
  since a seeded export draws the same values for the same batch), and
  every output column (probe row x element) is tested: integer outputs by
  a chi-square homogeneity test, float outputs by a two-sample
  Kolmogorov-Smirnov test, each at `SIGNIFICANCE_LEVEL` divided by the
  number of tests (Bonferroni, so that a correct model fails with
  probability below `SIGNIFICANCE_LEVEL`). Columns constant in both
  (deterministic outputs, e.g. a state) must agree within
  `STATE_TOLERANCE`.

  Args:
    reference: Runs the SavedModel's signature.
    converted: Runs the converted model (noise inputs included).
    specs: The signature's input specs.
    noise: The converted model's noise inputs.

  Returns:
    The `FormatRecord` (its `file` empty).
  """
  if any(s.shape.rank and s.shape[0] is not None for s in specs.values()):
    return FormatRecord('', NOT_CHECKED, False, None,
                        'fixed batch size: no independent samples to test')
  rng = np.random.RandomState(_PROBE_SEED)
  probe = {k: _sample(s, k, PROBE_ROWS, rng) for k, s in specs.items()}
  inputs = {k: np.repeat(v, SAMPLES, axis=0) for k, v in probe.items()}
  batch = PROBE_ROWS * SAMPLES
  generator = np.random.default_rng(_NOISE_SEED)
  noise_values = {n.name: n.draw(generator, batch) for n in noise}
  return compare_samples(reference(inputs),
                         converted(dict(inputs, **noise_values)), PROBE_ROWS)


def _sample_columns(expected: Dict[Text, np.ndarray],
                    actual: Dict[Text, np.ndarray], probe_rows: int) -> Any:
  """`(where, expected draws, actual draws)` per probe row and element.

  Returns:
    The columns, or a message naming an output missing or reshaped.
  """
  columns = []
  for key, value in expected.items():
    value = np.asarray(value)
    other = np.asarray(actual.get(key)) if key in actual else None
    if other is None or other.shape != value.shape:
      return 'output {!r} missing or reshaped'.format(key)
    value = value.reshape(probe_rows, value.shape[0] // probe_rows, -1)
    other = other.reshape(value.shape)
    for row in range(probe_rows):
      for element in range(value.shape[2]):
        columns.append(('{}[row {}, element {}]'.format(key, row, element),
                        value[row, :, element], other[row, :, element]))
  return columns


def compare_samples(expected: Dict[Text, np.ndarray],
                    actual: Dict[Text, np.ndarray],
                    probe_rows: int) -> FormatRecord:
  """Tests that two runtimes' outputs have the same distribution.

  Args:
    expected: The reference's outputs by key, each of shape `(probe_rows *
      samples, ...)`: `samples` draws for each probe row, one row after the
      other.
    actual: The other runtime's outputs for the same inputs.
    probe_rows: The number of probe rows.

  Returns:
    A `SAME_DISTRIBUTION` `FormatRecord` (its `file` empty); see
    `_check_same_distribution` for the tests.
  """
  columns = _sample_columns(expected, actual, probe_rows)
  if isinstance(columns, str):
    return FormatRecord('', SAME_DISTRIBUTION, False, None, columns)
  tests = []  # (where, test, statistic, p-value)
  largest = 0.0
  for where, first, second in columns:
    if first.dtype.kind not in 'fiub':
      if not np.array_equal(first, second):
        return FormatRecord('', SAME_DISTRIBUTION, False, None,
                            '{} differs'.format(where))
      continue
    continuous = first.dtype.kind == 'f'
    first = first.astype(np.float64)
    second = second.astype(np.float64)
    if np.ptp(first) == 0 and np.ptp(second) == 0:
      largest = max(largest, float(abs(first[0] - second[0])))
      continue
    if continuous:
      statistic = _ks_statistic(first, second)
      tests.append((where, 'ks', statistic,
                    _ks_p_value(statistic, first.size, second.size)))
    else:
      tests.append((where, 'chi_square') + _chi_square(first, second))
  per_test = SIGNIFICANCE_LEVEL / max(len(tests), 1)
  worst = min(tests, key=lambda t: t[3], default=None)
  statistics = {
      'tests': 'chi-square homogeneity test per integer output element, '
               'two-sample Kolmogorov-Smirnov test per float output element',
      'significance_level': SIGNIFICANCE_LEVEL,
      'correction': 'bonferroni',
      'num_tests': len(tests),
      'samples_per_runtime': columns[0][1].size if columns else 0,
      'probe_rows': probe_rows,
      'max_ks_statistic': max((t[2] for t in tests if t[1] == 'ks'),
                              default=None),
      'max_chi_square': max((t[2] for t in tests if t[1] == 'chi_square'),
                            default=None),
      'min_p_value': worst[3] if worst else None,
      'worst': worst[0] if worst else None,
  }
  if largest > STATE_TOLERANCE:
    return FormatRecord(
        '', SAME_DISTRIBUTION, False, largest,
        'deterministic outputs differ by {:.3g} (over {:g})'.format(
            largest, STATE_TOLERANCE), statistics=statistics)
  same = worst is None or worst[3] >= per_test
  detail = ('{} tests at level {:g} (Bonferroni) on {} draws per probe row: '
            'smallest p-value {:.3g}{}'.format(
                len(tests), SIGNIFICANCE_LEVEL, statistics[
                    'samples_per_runtime'],
                worst[3] if worst else 1.0,
                '' if same else ' ({}: {} = {:.4g})'.format(
                    worst[0], worst[1], worst[2])))
  return FormatRecord('', SAME_DISTRIBUTION, same, largest, detail,
                      statistics=statistics)


def check(loaded: Any, model: bytes, format_name: Text,
          signature_key: Text = 'action',
          noise: Optional[Sequence[export_noise.NoiseInput]] = None
          ) -> FormatRecord:
  """Checks a converted model of `loaded`'s signature against it.

  Args:
    loaded: The loaded export (its variables as the model was converted).
    model: The converted model.
    format_name: `TFLITE` or `ONNX`.
    signature_key: The converted signature.
    noise: For a stochastic signature, the noise inputs of a model converted
      with its noise as inputs (`export_noise`): checked for
      `SAME_DISTRIBUTION`. None: a stochastic signature is `NOT_CHECKED`.

  Returns:
    The `FormatRecord` (its `file` empty).
  """
  signature = loaded.signatures[signature_key]
  specs = signature.structured_input_signature[1]
  state_keys = [k for k in signature.structured_outputs if k in specs]
  stochastic = not is_deterministic(signature)
  if stochastic and noise is None:
    return FormatRecord('', NOT_CHECKED, False, None,
                        'stochastic: runtimes draw different random streams')

  def reference(inputs):
    return {k: v.numpy() for k, v in signature(**inputs).items()}

  converted = (_tflite_runner(model, signature_key) if format_name == TFLITE
               else _onnx_runner(model))
  try:
    if stochastic:
      return _check_same_distribution(reference, converted, specs, noise)
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


def convert_with_noise(
    noise_action: export_noise.NoiseAction, format_name: Text
) -> Tuple[bytes, Optional[List[Text]]]:
  """Converts a stochastic action with noise inputs, builtin ops only.

  Args:
    noise_action: From `export_noise.noise_action` (its variables hold the
      export's values).
    format_name: `TFLITE` or `ONNX`.

  Returns:
    `(model, weight_names)` (see `FormatRecord.weight_names`).

  Raises:
    ValueError: `format_name` is unknown.
    Exception: The converter's error, e.g. an op without a TFLite builtin.
  """
  if format_name == TFLITE:
    # Builtin ops only: that is the point of feeding the noise.
    return export_conversion.tflite_model_with_weights(
        noise_action, noise_action, select_tf_ops=False), None
  if format_name == ONNX:
    model, report = export_conversion.convert_action_to_onnx(
        noise_action, 'action')
    return model, list(report.weight_names)
  raise ValueError('format must be one of {}, got {!r}.'.format(
      FORMATS, format_name))


def _noise_action(
    make: Optional[Callable[[], export_noise.NoiseAction]], signature: Any,
    where: Text) -> Optional[export_noise.NoiseAction]:
  """`make()` for a stochastic signature, None if it is not or fails."""
  if make is None or is_deterministic(signature):
    return None
  try:
    return make()
  except Exception as e:  # pylint: disable=broad-except
    # Tracing a policy's distribution raises whatever the policy raises.
    logging.info('%s: converting the action with its random ops (select TF '
                 'ops, not checked): %s: %s', where, type(e).__name__,
                 ' '.join(str(e).split())[:300])
    return None


def write(export_dir: Text, formats: Sequence[Text],
          signature_key: Text = 'action',
          noise_action: Optional[
              Callable[[], export_noise.NoiseAction]] = None,
          noise_seed: Optional[int] = None) -> Record:
  """Converts, checks and stores the models of a written export.

  Args:
    export_dir: A directory holding a complete SavedModel (e.g. a staging
      directory about to be published).
    formats: Format names, each in `FORMATS`.
    signature_key: The signature to convert.
    noise_action: Makes the export's stochastic action with its noise as
      inputs (`export_noise.noise_action` on the live policy; called only
      when the signature is stochastic). Its models have builtin ops only
      and are checked for `SAME_DISTRIBUTION`. None, or a policy it cannot
      handle: the signature is converted with its random ops (select TF
      ops) and recorded `NOT_CHECKED`.
    noise_seed: The saver's seed, recorded for runtimes to seed their
      noise with.

  Returns:
    The record written to `RECORD_FILE`.

  Raises:
    ValueError: A format is unknown or a conversion fails.
  """
  loaded = tf.saved_model.load(export_dir)
  entries = {}
  stochastic = _noise_action(noise_action, loaded.signatures[signature_key],
                             export_dir)
  for format_name in formats:
    noise = None
    try:
      model = None
      if stochastic is not None:
        try:
          model, weight_names = convert_with_noise(stochastic, format_name)
          noise = stochastic.noise
        except Exception as e:  # pylint: disable=broad-except
          # Converter errors have no public common type.
          logging.info('%s: converting the noise-fed action to %s failed, '
                       'converting it with its random ops: %s: %s',
                       export_dir, format_name, type(e).__name__,
                       ' '.join(str(e).split())[:300])
      if model is None:
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
        check(loaded, model, format_name, signature_key, noise),
        file=model_file(format_name), weight_names=weight_names,
        noise_inputs=([n.to_json() for n in noise] if noise is not None
                      else None),
        noise_seed=noise_seed if noise is not None else None)
  record = Record(signature_key, weights_digest(export_dir), entries)
  with tf.io.gfile.GFile(os.path.join(export_dir, RECORD_FILE), 'w') as f:
    json.dump({'record_version': _RECORD_VERSION,
               'signature': record.signature,
               'weights_digest': record.weights_digest,
               'formats': {k: dataclasses.asdict(v)
                           for k, v in entries.items()}}, f, indent=2,
              sort_keys=True)
  return record
