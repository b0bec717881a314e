# coding=utf-8
"""Conversions of exported policies to other runtimes, one strategy each.

The single home of every conversion of a `PolicySaver` export (upstream
tf-agents 0.19.0 has none besides what its tests do with TFLite's converter):

* `convert_action_to_tflite`: a signature (default `action`) as a TFLite
  model, builtin ops only when possible, else with select TF ops, and a
  report of which TF ops it needs (upstream's builtins-only conversion fails
  for stochastic policies on TF 2.21).
* `tflite_model_with_weights`: a TFLite model whose weights are TFLite
  resource variables with a `set_weights` signature, so a runtime replaces
  them without converting again (used by `saved_policy`'s TFLite backend).
  It also converts a stochastic action with its noise as inputs
  (`export_noise.NoiseAction`), with builtin ops only.
* `convert_action_to_onnx`: a signature (default `action`) as an ONNX model
  (tf2onnx), run by onnxruntime without TensorFlow; its weights are named
  initializers a runtime replaces per session (used by `saved_policy`'s
  onnxruntime backend).

ONNX models
-----------
Inputs are named exactly as the flat signature's input keys (e.g.
`arg_0_observation`, `state_0`); outputs as its output keys (`action`,
`info/...`), except that ONNX forbids an input and an output of one name, so
an output whose key is also an input key (the policy state) is named
`next_<key>` (e.g. `next_state_0`): feed output `next_<key>` back unchanged
as input `<key>`. The model's `metadata_props` hold that mapping as JSON
(`STATE_OUTPUTS_METADATA`: `{output name: input name}`) and the signature
key.

The weights (`loaded.model_variables[i]`) are initializers named
`weight_name(i)` (`weight_0000`, ...), holding the values they had at
conversion; variables the signature does not read are absent. A runtime
replaces them without converting again by
`onnxruntime.SessionOptions.add_initializer(name, OrtValue)` when it creates
a session: onnxruntime then treats them as constants, so a step costs what
it costs with frozen weights (weights as graph inputs would be fed on every
step and would keep onnxruntime from pre-packing them). To find the
initializers, the conversion runs on distinct random values put into the
variables (their values are restored afterwards; random values also keep
tf2onnx from optimizing away e.g. an all-zero bias): a weight that tf2onnx
folded into another constant would not be replaceable, and raises.
TensorFlow's `BroadcastArgs` (in `Deterministic.sample`), which tf2onnx
1.17 does not convert, becomes standard ONNX ops.
"""

import dataclasses
import json
import re
from typing import (Any, Callable, Dict, List, Optional, Sequence, Text,
                    Tuple, Union)

from absl import logging
import numpy as np
import tensorflow as tf


# The TFLite signature of `tflite_model_with_weights` replacing the weights.
SET_WEIGHTS_SIGNATURE = 'set_weights'


@dataclasses.dataclass(frozen=True)
class TFLiteConversionReport:
  """How `convert_action_to_tflite` converted the `action` signature.

  Attributes:
    builtin_ops_only: True if the model uses TFLite builtin ops only; False if
      it needs TF kernels (select TF ops, "Flex" delegate).
    select_tf_ops: Names of the TF ops that run through select TF ops.
    converter_message: The converter's error from the builtins-only attempt
      when it failed, else ''.
  """

  builtin_ops_only: bool
  select_tf_ops: Tuple[Text, ...] = ()
  converter_message: Text = ''

  def __str__(self) -> str:
    if self.builtin_ops_only:
      return 'TFLite builtin ops only.'
    return 'TFLite builtin ops + select TF ops: {}.'.format(
        ', '.join(self.select_tf_ops) or '(unknown)'
    )


_FLEX_OP = re.compile(rb'Flex([A-Z][A-Za-z0-9_]*)')


def convert_action_to_tflite(
    export_dir: Text, signature_key: Text = 'action'
) -> Tuple[bytes, TFLiteConversionReport]:
  """Converts the `action` signature of an export to a TFLite model.

  Tries TFLite builtin ops only; if the converter rejects some ops, converts
  again allowing select TF ops and reports which ones the model needs.

  Args:
    export_dir: A directory written by `PolicySaver.save`.
    signature_key: The signature to convert.

  Returns:
    `(tflite_model_bytes, report)`.
  """

  def convert(ops):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        export_dir, signature_keys=[signature_key]
    )
    converter.target_spec.supported_ops = ops
    return converter.convert()

  try:
    model = convert([tf.lite.OpsSet.TFLITE_BUILTINS])
    report = TFLiteConversionReport(builtin_ops_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # The converter raises ConverterError (not exported publicly) for ops
    # without a builtin kernel; anything else re-raises below as well.
    message = str(e)
    model = convert(
        [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    )
    ops = sorted({m.decode('ascii') for m in _FLEX_OP.findall(model)})
    report = TFLiteConversionReport(
        builtin_ops_only=False,
        select_tf_ops=tuple(ops),
        converter_message=message,
    )
  logging.info('TFLite conversion of %s[%s]: %s', export_dir, signature_key,
               report)
  return model, report


def weight_name(index: int) -> Text:
  """The name of the `index`-th weight in converted models."""
  return 'weight_{:04d}'.format(index)


def tflite_model_with_weights(loaded: Any, signature: Any,
                              select_tf_ops: bool = True) -> bytes:
  """A signature as a TFLite model whose weights are replaceable.

  The model's weights (`loaded.model_variables`) are TFLite resource
  variables, initialized with their current values; its `set_weights`
  signature takes new values for all of them (keyed `weight_name(i)`), so
  refreshing the weights never converts again. The converted signature keeps
  the name `action`.

  Args:
    loaded: The loaded export.
    signature: The signature to convert (e.g. `loaded.signatures['action']`,
      or an `export_noise.NoiseAction`).
    select_tf_ops: Whether to fall back to select TF ops when builtin ops do
      not suffice (False: the converter's error is raised instead).

  Returns:
    The TFLite flatbuffer (builtin ops only when possible, else with select
    TF ops).
  """
  weights = list(loaded.model_variables)
  _, input_specs = signature.structured_input_signature
  action_specs = {k: tf.TensorSpec(v.shape, v.dtype, k)
                  for k, v in input_specs.items()}
  weight_specs = {weight_name(i): tf.TensorSpec(v.shape, v.dtype,
                                                weight_name(i))
                  for i, v in enumerate(weights)}
  module = tf.Module()
  module.weights = weights

  @tf.function(input_signature=[action_specs])
  def action(inputs):
    return signature(**inputs)

  @tf.function(input_signature=[weight_specs])
  def set_weights(values):
    for i, variable in enumerate(weights):
      variable.assign(values[weight_name(i)])
    return {'weights_set': tf.constant(len(weights))}

  functions = [action.get_concrete_function(),
               set_weights.get_concrete_function()]
  last_error = None
  op_sets = [[tf.lite.OpsSet.TFLITE_BUILTINS]]
  if select_tf_ops:
    op_sets.append(
        [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])
  for ops in op_sets:
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        functions, module)
    converter.experimental_enable_resource_variables = True
    converter.target_spec.supported_ops = ops
    try:
      return converter.convert()
    except Exception as e:  # pylint: disable=broad-except
      # The converter's error type is not exported publicly.
      last_error = e
  raise last_error


# `metadata_props` keys of converted ONNX models.
SIGNATURE_METADATA = 'tf_agents.signature_key'
STATE_OUTPUTS_METADATA = 'tf_agents.state_outputs'
# Prefix of an output whose name is also an input's (see module docstring).
NEXT_PREFIX = 'next_'
_DEFAULT_ONNX_OPSET = 17
_TAG_SEED = 20240605


@dataclasses.dataclass(frozen=True)
class ONNXConversionReport:
  """How `convert_action_to_onnx` converted a signature.

  Attributes:
    signature_key: The converted signature.
    opset: The ONNX opset of the default domain.
    input_names: The model's inputs (the signature's input keys), sorted.
    output_names: The model's outputs, in the signature's output key order.
    state_outputs: `(output name, input name)` pairs: the output to feed
      back as that input on the next step.
    weight_names: The initializers holding weights, `weight_name(i)` for
      `loaded.model_variables[i]`, in that order.
    tf2onnx_version: The converter's version.
  """

  signature_key: Text
  opset: int
  input_names: Tuple[Text, ...]
  output_names: Tuple[Text, ...]
  state_outputs: Tuple[Tuple[Text, Text], ...]
  weight_names: Tuple[Text, ...]
  tf2onnx_version: Text

  def __str__(self) -> str:
    return ('ONNX opset {} (tf2onnx {}): inputs {}, outputs {}, {} '
            'replaceable weights.'.format(
                self.opset, self.tf2onnx_version, ', '.join(self.input_names),
                ', '.join(self.output_names), len(self.weight_names)))


def _broadcast_args_to_onnx(ctx: Any, node: Any, name: Text,
                            args: List[Any]) -> None:
  """tf2onnx handler: `BroadcastArgs(s0, s1)` as standard ONNX ops.

  The broadcast shape is the shape of a `uint8` tensor of shape `s0`
  expanded to `s1` (sample shapes are small, so the tensor is too).

  Args:
    ctx: The tf2onnx graph.
    node: The `BroadcastArgs` node, turned into the final `Shape`.
    name: The node's name.
    args: Unused handler arguments.
  """
  del name, args
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  from onnx import TensorProto  # pylint: disable=g-import-not-at-top
  shapes = [
      ctx.make_node('Cast', [i], attr={'to': TensorProto.INT64}).output[0]
      for i in node.input
  ]
  zeros = ctx.make_node(
      'ConstantOfShape', [shapes[0]],
      attr={'value': numpy_helper.from_array(np.zeros([1], np.uint8))})
  expanded = ctx.make_node('Expand', [zeros.output[0], shapes[1]])
  output = node.output[0]
  dtype = ctx.get_dtype(output)
  node.type = 'Shape'
  ctx.replace_inputs(node, [expanded.output[0]])
  if dtype != TensorProto.INT64:
    ctx.set_dtype(output, TensorProto.INT64)
    cast = ctx.insert_new_node_on_output('Cast', output,
                                         name=node.child_name(), to=dtype)
    ctx.set_dtype(cast.output[0], dtype)
    ctx.copy_shape(output, cast.output[0])


def _tag_values(variables: List[tf.Variable]) -> List[Optional[np.ndarray]]:
  """Distinct random values per float variable (None: not tagged)."""
  rng = np.random.RandomState(_TAG_SEED)
  tags = []
  for variable in variables:
    dtype = variable.dtype.as_numpy_dtype
    if variable.dtype.is_floating and variable.shape.num_elements():
      # Away from 0 and 1, so no optimizer drops an add or a multiply.
      value = rng.uniform(0.25, 0.75, variable.shape.as_list())
      sign = rng.choice([-1.0, 1.0], variable.shape.as_list())
      tags.append((value * sign).astype(dtype))
    else:
      tags.append(None)
  return tags


def _rename_inputs(graph: Any, renames: Dict[Text, Text]) -> None:
  """Renames node inputs in `graph` and its subgraphs."""
  from onnx import AttributeProto  # pylint: disable=g-import-not-at-top
  for node in graph.node:
    for i, name in enumerate(node.input):
      if name in renames:
        node.input[i] = renames[name]
    for attribute in node.attribute:
      if attribute.type == AttributeProto.GRAPH:
        _rename_inputs(attribute.g, renames)
      elif attribute.type == AttributeProto.GRAPHS:
        for subgraph in attribute.graphs:
          _rename_inputs(subgraph, renames)


def _name_weights(model: Any, tags: List[Optional[np.ndarray]],
                  values: List[np.ndarray]) -> List[int]:
  """Finds the tagged weights among the initializers; names them, sets values.

  Args:
    model: The ONNX `ModelProto`, modified in place.
    tags: Their values during conversion (`_tag_values`).
    values: Their real values, put into the model.

  Returns:
    The indices of the weights found.
  """
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  by_key = {}
  for i, tag in enumerate(tags):
    if tag is not None:
      by_key.setdefault((tag.dtype.str, tag.shape), []).append(i)
  graph = model.graph
  renames = {}
  kept = []
  found = set()
  for initializer in graph.initializer:
    array = numpy_helper.to_array(initializer)
    index = next(
        (i for i in by_key.get((array.dtype.str, array.shape), ())
         if np.array_equal(array, tags[i])), None)
    if index is None:
      kept.append(initializer)
      continue
    renames[initializer.name] = weight_name(index)
    if index not in found:
      found.add(index)
      kept.append(numpy_helper.from_array(
          np.asarray(values[index], tags[index].dtype), weight_name(index)))
  del graph.initializer[:]
  graph.initializer.extend(kept)
  _rename_inputs(graph, renames)
  for output in graph.output:
    if output.name in renames:
      raise ValueError('A weight is an output of the ONNX model.')
  return sorted(found)


def _loaded_for_onnx(export_dir_or_loaded: Union[Text, Any]
                    ) -> Tuple[Any, Text]:
  """The loaded export to convert, and how errors name it."""
  if isinstance(export_dir_or_loaded, (str, bytes)):
    # Imported here: export_verify checks the converted models an export
    # carries (export_equivalence), which are made with this module.
    from tf_agents.policies import export_verify  # pylint: disable=g-import-not-at-top
    loaded, _ = export_verify.load_current(export_dir_or_loaded)
    return loaded, export_dir_or_loaded
  return export_dir_or_loaded, 'the loaded export'


def _onnx_output_names(input_keys: Sequence[Text], output_keys: Sequence[Text],
                       where: Text, signature_key: Text) -> List[Text]:
  """The ONNX output names: `next_<key>` for a state fed back as an input.

  Raises:
    ValueError: Two inputs or outputs would have the same name.
  """
  output_names = [NEXT_PREFIX + k if k in input_keys else k
                  for k in output_keys]
  taken = set(input_keys)
  for name in output_names:
    if name in taken:
      raise ValueError('ONNX output name {!r} of {}[{}] is also the name of '
                       'an input or output.'.format(name, where,
                                                    signature_key))
    taken.add(name)
  return output_names


def _from_function_with_tags(
    action: Callable[..., Any], input_signature: List[tf.TensorSpec],
    opset: int, weights: Sequence[tf.Variable],
    tags: List[Optional[np.ndarray]], values: List[np.ndarray]) -> Any:
  """tf2onnx's model of `action`, converted while the weights hold tags.

  Each weight holds its tag (a value found nowhere else, `_tag_values`)
  during the conversion, so its initializer can be found afterwards; the
  weights get their values back whatever happens.

  Returns:
    The ONNX `ModelProto`.
  """
  import tf2onnx  # pylint: disable=g-import-not-at-top
  try:
    for weight, tag in zip(weights, tags):
      if tag is not None:
        weight.assign(tag)
    model, _ = tf2onnx.convert.from_function(
        tf.function(action, autograph=False),
        input_signature=input_signature,
        opset=opset,
        custom_op_handlers={'BroadcastArgs': (_broadcast_args_to_onnx, [])},
    )
  finally:
    for weight, value in zip(weights, values):
      weight.assign(value)
  return model


def _checked_weight_names(model: Any, signature: Any,
                          weights: Sequence[tf.Variable],
                          tags: List[Optional[np.ndarray]],
                          values: List[np.ndarray], what: Text) -> List[int]:
  """Names the model's weight initializers; every weight read must be one.

  Returns:
    The indices of the weights found as initializers (`_name_weights`).

  Raises:
    ValueError: A weight the signature reads was folded into another
      constant (so it could not be replaced).
  """
  found = _name_weights(model, tags, values)
  handles = {id(h) for h in signature.captured_inputs}
  folded = [w.name for i, w in enumerate(weights)
            if tags[i] is not None and i not in found and
            id(w.handle) in handles]
  if folded:
    raise ValueError(
        'The ONNX model of {} reads weights {} that are not initializers '
        'of its main graph (folded into other constants or inside a loop '
        'body), so they could not be replaced.'.format(what, folded))
  return found


def convert_action_to_onnx(
    export_dir_or_loaded: Union[Text, Any],
    signature_key: Text = 'action',
    opset: Optional[int] = None,
) -> Tuple[bytes, ONNXConversionReport]:
  """Converts a flat signature of an export to an ONNX model (tf2onnx).

  See the module docstring for the names of inputs, outputs and weights.

  Args:
    export_dir_or_loaded: A directory written by `PolicySaver.save` (its
      current version is read), or the object `tf.saved_model.load` returned
      for one. Its variables are assigned during the conversion and restored.
    signature_key: The signature to convert (e.g. `action`, or another flat
      signature of the export with the same kind of inputs).
    opset: The ONNX opset (default 17; onnxruntime >= 1.14 runs it).

  Returns:
    `(onnx_model_bytes, report)`.

  Raises:
    ValueError: The signature does not exist, uses ops tf2onnx cannot
      convert, or reads a weight tf2onnx folded into another constant.
    ImportError: tf2onnx or onnx is not installed.
  """
  # Imported here: importing policy_saver stays as fast as without ONNX.
  import onnx  # pylint: disable=g-import-not-at-top
  import tf2onnx  # pylint: disable=g-import-not-at-top

  loaded, where = _loaded_for_onnx(export_dir_or_loaded)
  signatures = loaded.signatures
  if signature_key not in signatures:
    raise ValueError('{} has no {!r} signature (it has {}).'.format(
        where, signature_key, sorted(signatures)))
  signature = signatures[signature_key]
  input_specs = signature.structured_input_signature[1]
  input_keys = sorted(input_specs)
  output_keys = list(signature.structured_outputs)
  output_names = _onnx_output_names(input_keys, output_keys, where,
                                    signature_key)
  opset = opset or _DEFAULT_ONNX_OPSET

  def action(*args):
    outputs = signature(**dict(zip(input_keys, args)))
    return {n: outputs[k] for k, n in zip(output_keys, output_names)}

  weights = list(getattr(loaded, 'model_variables', None) or ())
  values = [w.numpy() for w in weights]
  tags = _tag_values(weights)
  model = _from_function_with_tags(
      action, [tf.TensorSpec(input_specs[k].shape, input_specs[k].dtype, k)
               for k in input_keys], opset, weights, tags, values)
  try:
    # Also rejects ops tf2onnx left unconverted (it continues on errors).
    onnx.checker.check_model(model)
  except onnx.checker.ValidationError as e:
    raise ValueError('tf2onnx could not convert {}[{}]: {}'.format(
        where, signature_key, ' '.join(str(e).split())[:500])) from e
  found = _checked_weight_names(model, signature, weights, tags, values,
                                '{}[{}]'.format(where, signature_key))
  state_outputs = tuple((n, k) for k, n in zip(output_keys, output_names)
                        if n != k)
  for key, value in ((SIGNATURE_METADATA, signature_key),
                     (STATE_OUTPUTS_METADATA,
                      json.dumps(dict(state_outputs), sort_keys=True))):
    entry = model.metadata_props.add()
    entry.key = key
    entry.value = value
  report = ONNXConversionReport(
      signature_key=signature_key,
      opset=opset,
      input_names=tuple(i.name for i in model.graph.input),
      output_names=tuple(o.name for o in model.graph.output),
      state_outputs=state_outputs,
      weight_names=tuple(weight_name(i) for i in found),
      tf2onnx_version=tf2onnx.__version__,
  )
  logging.info('ONNX conversion of %s[%s]: %s', where, signature_key, report)
  return model.SerializeToString(), report
