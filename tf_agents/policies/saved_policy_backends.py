# coding=utf-8
"""The runtimes `saved_policy.SavedPolicy` runs an export's `action` on.

New module (upstream's `SavedModelPyTFEagerPolicy` has one runtime, the
loaded function). One class per backend, each with the same interface:

* built from the export (a TF1 session of its SavedModel, the loaded
  signature, a TFLite model or an ONNX model);
* `run(arrays, batch_size)`: the flat `action` inputs in signature order to
  its outputs in the order asked for, as numpy arrays;
* following a refresh: `sync(loaded, prefix)` gives the backend the
  variable values of the eager loaded export (read from checkpoint `prefix`
  when it has every key, for the session); backends that hold weights of
  their own (`follows_weights`) take new values with `set_weights(values)`,
  one array per model variable, without converting again.

`BACKENDS` are the names `SavedPolicy(backend=...)` and `policy_loader.load`
take, `DEFAULT_BACKEND` their one default, and `stored_formats` the plain
choice of which stored converted models a request may use.
"""

import uuid
import warnings
from typing import Any, Dict, List, Optional, Sequence, Text

import numpy as np
import tensorflow as tf

from tf_agents.policies import export_contract
from tf_agents.policies import export_conversion
from tf_agents.policies import export_equivalence
from tf_agents.policies import export_noise

BACKEND_AUTO = 'auto'
BACKEND_SAVED_MODEL = 'saved_model'
BACKEND_TFLITE = 'tflite'
BACKEND_ONNXRUNTIME = 'onnxruntime'
BACKENDS = (BACKEND_AUTO, BACKEND_SAVED_MODEL, BACKEND_TFLITE,
            BACKEND_ONNXRUNTIME)
# The backend of `SavedPolicy` and `policy_loader.load` when none is named.
DEFAULT_BACKEND = BACKEND_AUTO
# Stored converted models `'auto'` prefers, fastest first (per step at batch
# 1: TFLite about 19 us, onnxruntime about 22 us for a small MLP).
AUTO_FORMATS = (export_equivalence.TFLITE, export_equivalence.ONNX)
_BACKEND_FORMATS = {
    BACKEND_TFLITE: export_equivalence.TFLITE,
    BACKEND_ONNXRUNTIME: export_equivalence.ONNX,
}

_ACTION_SIGNATURE = export_contract.ACTION
# The TFLite signature replacing the weights (see
# `export_conversion.tflite_model_with_weights`).
_SET_WEIGHTS_SIGNATURE = export_conversion.SET_WEIGHTS_SIGNATURE


def stored_formats(requested: Text,
                   record: Optional[export_equivalence.Record]) -> List[Text]:
  """The stored converted models a backend request may run, best first.

  Args:
    requested: A name of `BACKENDS`.
    record: The export's equivalence record (None: it stores no models).

  Returns:
    For `'auto'`, the formats of `AUTO_FORMATS` the record calls
    equivalent; for `'tflite'` and `'onnxruntime'`, their format if stored
    (equivalent or not: the caller asked for it); nothing for
    `'saved_model'` or without a record.
  """
  if record is None or requested == BACKEND_SAVED_MODEL:
    return []
  if requested == BACKEND_AUTO:
    return [f for f in AUTO_FORMATS if record.equivalent(f)]
  return [f for f in (_BACKEND_FORMATS[requested],) if f in record.formats]


class SessionBackend(object):
  """Runs the export's `action` SignatureDef in a `tf.compat.v1.Session`.

  The session runs in the calling thread with pre-resolved feeds and fetches,
  taking and returning numpy arrays: a step costs one `Session.run` of the
  graph and no Python-side argument binding or tensor conversion, about half
  of what calling the loaded concrete function costs.
  """

  name = BACKEND_SAVED_MODEL

  def __init__(
      self,
      export_dir: Text,
      input_specs: Sequence[tf.TensorSpec],
      input_keys: Sequence[Text],
      output_keys: Sequence[Text],
      num_threads: Optional[int],
  ):
    config = tf.compat.v1.ConfigProto(
        inter_op_parallelism_threads=1,
        intra_op_parallelism_threads=num_threads or 0,
        use_per_session_threads=True,
    )
    config.gpu_options.allow_growth = True
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph, config=config)
    with graph.as_default():
      meta_graph = tf.compat.v1.saved_model.load(
          session, [tf.saved_model.SERVING], export_dir
      )
    signature = meta_graph.signature_def[_ACTION_SIGNATURE]
    feeds = []
    for spec, key in zip(input_specs, input_keys):
      info = signature.inputs.get(spec.name) or signature.inputs.get(key)
      if info is None:
        raise ValueError(
            'The action SignatureDef has no input {!r} (it has {}).'.format(
                key, sorted(signature.inputs)
            )
        )
      feeds.append(info.name)
    fetches = [signature.outputs[key].name for key in output_keys]
    self._session = session
    self._saver_def = meta_graph.saver_def
    self._signatures = meta_graph.signature_def
    self._call = session.make_callable(
        fetches, feed_list=feeds, accept_options=True
    )
    # Runs the graph in the calling thread: no thread hand-off per step.
    self._options = tf.compat.v1.RunOptions(inter_op_thread_pool=-1)

  def run(self, arrays: Sequence[np.ndarray], batch_size: int) -> List[Any]:
    del batch_size  # Any batch size the export was saved with.
    return self._call(*arrays, options=self._options)

  def call(self, signature_key: Text,
           inputs: Dict[Text, Any]) -> Dict[Text, np.ndarray]:
    """Runs another signature of the export, e.g. `get_initial_state`.

    Args:
      signature_key: The signature.
      inputs: A value per input key.

    Returns:
      Its outputs by key.

    Raises:
      KeyError: No such signature or input.
    """
    signature = self._signatures[signature_key]
    keys = sorted(signature.outputs)
    values = self._session.run(
        [signature.outputs[k].name for k in keys],
        {signature.inputs[k].name: v for k, v in inputs.items()})
    return dict(zip(keys, values))

  def restore(self, prefix: Text) -> None:
    """Reads the variables from checkpoint `prefix` (SavedModel keys).

    Raises:
      tf.errors.OpError: A key is missing or has another shape; some
        variables may have been assigned.
    """
    self._session.run(self._saver_def.restore_op_name,
                      {self._saver_def.filename_tensor_name: prefix})

  def save(self, prefix: Text) -> None:
    """Writes the session's variables to checkpoint `prefix`."""
    self._session.run(self._saver_def.save_tensor_name,
                      {self._saver_def.filename_tensor_name: prefix})

  def sync(self, loaded: Any, prefix: Optional[Text] = None) -> None:
    """Gives the session the variable values of the eager `loaded`.

    Args:
      loaded: The loaded export, whose variables were just restored.
      prefix: The checkpoint they were restored from, if known: read
        directly when it has every key the SavedModel's own restore op reads
        (this repository's checkpoints and exports do), which costs one read
        instead of writing the values out and reading them back.
    """
    if prefix is not None:
      try:
        self.restore(prefix)
        return
      except tf.errors.OpError:
        pass  # E.g. upstream's checkpoint layout: copy from `loaded`.
    prefix = 'ram://saved_policy_sync/{}/variables'.format(uuid.uuid4().hex)
    # `loaded` as the checkpoint root gives the SavedModel's variable keys.
    tf.train.Checkpoint(root=loaded).write(prefix)
    try:
      self._session.run(
          self._saver_def.restore_op_name,
          {self._saver_def.filename_tensor_name: prefix},
      )
    finally:
      for path in tf.io.gfile.glob(prefix + '*'):
        tf.io.gfile.remove(path)


class SignatureBackend(object):
  """Calls the loaded `action` signature (fallback of `SessionBackend`)."""

  name = BACKEND_SAVED_MODEL

  def __init__(
      self,
      function: Any,
      input_keys: Sequence[Text],
      output_keys: Sequence[Text],
  ):
    self._function = function
    self._input_keys = tuple(input_keys)
    self._output_keys = tuple(output_keys)

  def run(self, arrays: Sequence[np.ndarray], batch_size: int) -> List[Any]:
    del batch_size  # Any batch size the export was saved with.
    constant = tf.constant
    outputs = self._function(
        **{k: constant(a) for k, a in zip(self._input_keys, arrays)}
    )
    return [outputs[k].numpy() for k in self._output_keys]

  def sync(self, loaded: Any, prefix: Optional[Text] = None) -> None:
    del loaded, prefix  # Runs on the loaded object's own variables.


class TFLiteBackend(object):
  """Runs a TFLite model of the `action` signature.

  A model from `export_conversion.tflite_model_with_weights` has a
  `set_weights` signature: its weights are TFLite variables, replaced in
  place by `set_weights` (no conversion again). A model stored in the
  export has its weights as constants and is converted again from the live
  object when they change. A stochastic model converted with its noise as
  inputs (`export_noise`) gets noise drawn at every step from a NumPy
  generator.
  """

  name = BACKEND_TFLITE

  def __init__(
      self,
      model: bytes,
      input_specs: Sequence[tf.TensorSpec],
      input_keys: Sequence[Text],
      output_keys: Sequence[Text],
      num_threads: Optional[int],
      noise: Sequence[export_noise.NoiseInput] = (),
      seed: Optional[int] = None,
  ):
    with warnings.catch_warnings():
      # TF >= 2.18 warns that tf.lite.Interpreter moves to LiteRT.
      warnings.filterwarnings('ignore', message='.*tf.lite.Interpreter.*')
      interpreter = tf.lite.Interpreter(
          model_content=model, num_threads=num_threads
      )
    signatures = interpreter.get_signature_list()
    if _ACTION_SIGNATURE in signatures:
      key = _ACTION_SIGNATURE
    elif len(signatures) == 1:
      key = next(iter(signatures))
    else:
      raise ValueError(
          'The TFLite model has signatures {}, none of them {!r}.'.format(
              sorted(signatures), _ACTION_SIGNATURE
          )
      )
    runner = interpreter.get_signature_runner(key)
    input_details = runner.get_input_details()
    self._input_names = []
    for spec, k in zip(input_specs, input_keys):
      name = k if k in input_details else spec.name
      detail = input_details.get(name)
      if detail is None:
        raise ValueError(
            'The TFLite model has no input {!r} (it has {}).'.format(
                k, sorted(input_details)
            )
        )
      if np.dtype(detail['dtype']) != spec.dtype.as_numpy_dtype:
        raise ValueError(
            'The TFLite model input {!r} has dtype {}, expected {}.'.format(
                k, np.dtype(detail['dtype']).name, spec.dtype.name
            )
        )
      self._input_names.append(name)
    missing = [n.name for n in noise if n.name not in input_details]
    if missing:
      raise ValueError(
          'The TFLite model has no noise input {!r} (it has {}).'.format(
              missing[0], sorted(input_details)))
    self._noise = tuple(noise)
    self._rng = np.random.default_rng(seed)
    output_details = runner.get_output_details()
    missing = [k for k in output_keys if k not in output_details]
    if missing:
      raise ValueError(
          'The TFLite model has no output {!r} (it has {}).'.format(
              missing[0], sorted(output_details)
          )
      )
    self._output_keys = tuple(output_keys)
    self._interpreter = interpreter
    self._runner = runner
    self._set_weights = None
    if _SET_WEIGHTS_SIGNATURE in signatures:
      self._set_weights = interpreter.get_signature_runner(
          _SET_WEIGHTS_SIGNATURE)

  @property
  def follows_weights(self) -> bool:
    """Whether `set_weights` replaces the weights (else: convert again)."""
    return self._set_weights is not None

  def set_weights(self, values: Sequence[np.ndarray]) -> None:
    """Replaces the weights (a model with `set_weights` only)."""
    self._set_weights(**{export_conversion.weight_name(i): value
                         for i, value in enumerate(values)})

  def run(self, arrays: Sequence[np.ndarray], batch_size: int) -> List[Any]:
    del batch_size  # The runner resizes the inputs to the arrays given.
    feed = dict(zip(self._input_names, arrays))
    if self._noise:
      rows = arrays[0].shape[0] if arrays else 1
      for noise in self._noise:
        feed[noise.name] = noise.draw(self._rng, rows)
    outputs = self._runner(**feed)
    return [outputs[k] for k in self._output_keys]


class ONNXRuntimeBackend(object):
  """Runs an ONNX model of the `action` signature with onnxruntime.

  The model comes from `export_conversion.convert_action_to_onnx`: inputs
  named by the signature's input keys, outputs by its output keys (state
  outputs `next_<key>`), weights as initializers `weight_<i>`. The session
  is created with the weights given to `set_weights` as its initializers, so
  new weights cost a new session (milliseconds), not a conversion, and each
  step runs with constant weights. A stochastic model converted with its
  noise as inputs (`export_noise`) gets noise drawn at every step from a
  NumPy generator.
  """

  name = BACKEND_ONNXRUNTIME
  follows_weights = True

  def __init__(
      self,
      model: bytes,
      weight_names: Sequence[Text],
      input_keys: Sequence[Text],
      output_keys: Sequence[Text],
      num_threads: Optional[int],
      values: Sequence[np.ndarray],
      noise: Sequence[export_noise.NoiseInput] = (),
      seed: Optional[int] = None,
  ):
    import onnxruntime  # pylint: disable=g-import-not-at-top
    self._ort = onnxruntime
    self._model = model
    # Index into `model_variables` of each weight the model holds.
    self._weights = [(name, int(name.rsplit('_', 1)[1]))
                     for name in weight_names]
    self._num_threads = num_threads
    self._input_names = list(input_keys)
    inputs = set(input_keys)
    self._output_names = [
        export_conversion.NEXT_PREFIX + k if k in inputs else k
        for k in output_keys
    ]
    self._session = None
    self.set_weights(values)
    self._noise = tuple(noise)
    self._rng = np.random.default_rng(seed)
    have = {i.name for i in self._session.get_inputs()}
    missing = [k for k in self._input_names + [n.name for n in self._noise]
               if k not in have]
    if missing:
      raise ValueError('The ONNX model has no input {!r} (it has {}).'.format(
          missing[0], sorted(have)))
    have = {o.name for o in self._session.get_outputs()}
    missing = [k for k in self._output_names if k not in have]
    if missing:
      raise ValueError('The ONNX model has no output {!r} (it has {}).'.format(
          missing[0], sorted(have)))

  def set_weights(self, values: Sequence[np.ndarray]) -> None:
    """A new session whose weight initializers are `values`.

    Args:
      values: One array per variable of `model_variables`, in order.
    """
    ort = self._ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = self._num_threads or 0
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # Errors only.
    # The session reads these buffers: they must outlive it.
    buffers = []
    for name, index in self._weights:
      buffer = ort.OrtValue.ortvalue_from_numpy(
          np.ascontiguousarray(values[index]))
      options.add_initializer(name, buffer)
      buffers.append(buffer)
    session = ort.InferenceSession(
        self._model, options, providers=['CPUExecutionProvider'])
    self._session, self._buffers = session, buffers
    self._run = session.run

  def run(self, arrays: Sequence[np.ndarray], batch_size: int) -> List[Any]:
    del batch_size  # The model takes any batch size the export takes.
    feed = dict(zip(self._input_names, arrays))
    if self._noise:
      rows = arrays[0].shape[0] if arrays else 1
      for noise in self._noise:
        feed[noise.name] = noise.draw(self._rng, rows)
    return self._run(self._output_names, feed)
