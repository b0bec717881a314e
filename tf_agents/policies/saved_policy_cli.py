# coding=utf-8
r"""Looks inside and runs a policy export written by `PolicySaver`.

Usage: saved_policy_cli COMMAND ARGS... [flags]. The commands are the entries
of `COMMAND_TABLE`, each with its usage line and summary, which
`saved_policy_cli --help` lists and `saved_policy_cli COMMAND --help` prints
with the command's arguments and flags.

With --json the result is one JSON document on stdout. Errors are one line on
stderr (and {"error": ..., "exit_code": ...} on stdout with --json).

Exit codes: 0 success; 1 the command failed (no such directory, not a policy
export, unknown gym environment, conversion failed, ...); 2 usage error
(unknown command, wrong number of arguments, bad flag value).

A new module (upstream tf-agents has no counterpart). It reads exports written
by this repository's `PolicySaver` and by upstream's; every file is read
through `tf.io.gfile`, so `gs://` paths work.
"""

import contextlib
import os
import re
import sys
import tempfile
import textwrap

# Before TensorFlow is imported: tf-agents needs Keras 2 (tf_keras) on
# TensorFlow >= 2.16, and TensorFlow's C++ INFO/WARNING lines would bury the
# output of a command-line tool.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# A native INFO line (`I1125 16:00:00.000000 123 port.cc:153] ...`), absl's
# preamble to the lines it writes before its logging is initialized, or the
# error a GPU build of TensorFlow logs when it finds no usable GPU (it then
# runs on the CPU, as this tool does everywhere else).
_NATIVE_INFO_LINE = re.compile(
    r'I\d{4} [\d:.]+ +\d+ [^ ]+:\d+\] '
    r'|WARNING: All log messages before absl::InitializeLog\(\) is called'
    r'|E\d{4} [\d:.]+ +\d+ cuda_[a-z_]+\.cc:\d+\] failed call to cuInit')


@contextlib.contextmanager
def _native_info_lines_dropped():
  """Drops TensorFlow's native INFO lines written to stderr in its scope.

  While its shared libraries load, TensorFlow >= 2.20 logs INFO lines (e.g.
  about oneDNN) before any log level applies, so `TF_CPP_MIN_LOG_LEVEL` does
  not filter them and they would bury a one-line error. When that variable
  asks for no INFO lines, file descriptor 2 is held in a temporary file while
  TensorFlow is imported and every other line is written back afterwards.

  Yields:
    Nothing.
  """
  if os.environ.get('TF_CPP_MIN_LOG_LEVEL', '0') in ('', '0'):
    yield
    return
  try:
    saved = os.dup(2)
  except OSError:  # No stderr to hold.
    yield
    return
  with tempfile.TemporaryFile() as held:
    sys.stderr.flush()
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      for line in held.read().decode('utf-8', 'replace').splitlines(True):
        if not _NATIVE_INFO_LINE.match(line):
          sys.stderr.write(line)
      sys.stderr.flush()


# pylint: disable=g-import-not-at-top,wrong-import-position
import dataclasses
import io
import json
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
with _native_info_lines_dropped():
  import tensorflow as tf
  # Finds the devices while stderr is held (see _NATIVE_INFO_LINE).
  tf.config.list_physical_devices()

from tensorflow.core.protobuf import saved_model_pb2
from google.protobuf import message as protobuf_message
from google.protobuf import text_format
from tf_agents.policies import export_contract
from tf_agents.policies import export_conversion
from tf_agents.policies import export_errors
from tf_agents.policies import export_publish
from tf_agents.policies import export_verify
from tf_agents.policies import policy_saver
# pylint: enable=g-import-not-at-top,wrong-import-position

PROGRAM = 'saved_policy_cli'
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_SPEC_KEYS = ('time_step_spec', 'action_spec', 'policy_state_spec',
              'info_spec')
_TFLITE_OP = re.compile(r'Op#\d+ (\w+)\(')
_SIDE = {'only_in_a': 'only in A', 'only_in_b': 'only in B'}
_LIBRARY_NAMES = {'gymnasium': 'Gymnasium', 'gym': 'gym'}

_JSON = flags.DEFINE_bool('json', False, 'Print the result as JSON.')
_ENV = flags.DEFINE_string(
    'env', 'CartPole-v0',
    'eval: environment id; Gymnasium if it registers the id, else gym; '
    '`gymnasium:ID` or `gym:ID` picks one.')
_EPISODES = flags.DEFINE_integer('episodes', 10, 'eval: number of episodes.')
_SEED = flags.DEFINE_integer(
    'seed', 0, 'eval: seed of the first episode (episode i uses seed+i).'
)
_MAX_STEPS = flags.DEFINE_integer(
    'max_steps', 10000, 'eval: upper bound on the steps of one episode.'
)
_TO = flags.DEFINE_string('to', 'tflite',
                          'convert: target format (tflite or onnx).')
_OUTPUT = flags.DEFINE_string('output', None, 'convert: output file.')
_SIGNATURE = flags.DEFINE_string(
    'signature', 'action', 'convert: the signature to convert.'
)
_FLAG_HOLDERS = (_JSON, _ENV, _EPISODES, _SEED, _MAX_STEPS, _TO, _OUTPUT,
                 _SIGNATURE)


class CliError(Exception):
  """A failure reported as one line and an exit code, never a traceback."""

  def __init__(self, message: str, exit_code: int = EXIT_FAILURE):
    super().__init__(message)
    self.exit_code = exit_code


@dataclasses.dataclass
class Options:
  """The flags that commands use, each field named as its flag."""

  env: str = 'CartPole-v0'
  episodes: int = 10
  seed: int = 0
  max_steps: int = 10000
  to: str = 'tflite'
  output: Optional[str] = None
  signature: str = 'action'


def resolve_path(path: str) -> str:
  """Makes a relative local path relative to where the user ran the tool.

  `bazel run` starts binaries in their runfiles directory and sets
  `BUILD_WORKING_DIRECTORY` to the directory it was run from.

  Args:
    path: A path from the command line.

  Returns:
    `path` joined to `$BUILD_WORKING_DIRECTORY` if that is set and `path` is
    relative and not a URL (`gs://...`), else `path` unchanged.
  """
  base = os.environ.get('BUILD_WORKING_DIRECTORY')
  if not base or not path or '://' in path or os.path.isabs(path):
    return path
  return os.path.join(base, path)


def _one_line(error: Any) -> str:
  text = ' '.join(str(error).split())
  return text or type(error).__name__


# ---------------------------------------------------------------- reading


def _check_export_dir(path: str) -> None:
  """Raises CliError unless `path` is a directory holding a SavedModel."""
  if not tf.io.gfile.exists(path):
    raise CliError('no such directory: {}'.format(path))
  if not tf.io.gfile.isdir(path):
    raise CliError('not a directory: {}'.format(path))
  if not any(
      tf.io.gfile.exists(os.path.join(path, name))
      for name in ('saved_model.pb', 'saved_model.pbtxt')
  ):
    raise CliError(
        '{} is not a policy export: it has no saved_model.pb'.format(path)
    )


def read_saved_model_proto(path: str) -> saved_model_pb2.SavedModel:
  """Reads `saved_model.pb` (or `.pbtxt`) of an export.

  Args:
    path: An export directory.

  Returns:
    The parsed `SavedModel` proto.

  Raises:
    CliError: If `path` is not a readable SavedModel directory.
  """
  _check_export_dir(path)
  proto = saved_model_pb2.SavedModel()
  binary = os.path.join(path, 'saved_model.pb')
  try:
    if tf.io.gfile.exists(binary):
      with tf.io.gfile.GFile(binary, 'rb') as f:
        proto.ParseFromString(f.read())
    else:
      with tf.io.gfile.GFile(os.path.join(path, 'saved_model.pbtxt')) as f:
        text_format.Parse(f.read(), proto)
  except (protobuf_message.DecodeError, text_format.ParseError) as e:
    raise CliError('{}: saved_model.pb is corrupt: {}'.format(
        path, _one_line(e)))
  if not proto.meta_graphs:
    raise CliError('{}: saved_model.pb has no MetaGraph'.format(path))
  return proto


def _register_distribution_types() -> None:
  """Registers TFP's TypeSpecs so exports with `distribution` load."""
  try:
    import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
    _ = tfp.distributions.Deterministic  # TFP's modules load lazily.
  except ImportError:
    pass


def load_export(path: str) -> Any:
  """Loads a policy export through the package's checked loader.

  The CLI's own checks run first, so a missing directory, a directory that
  is no SavedModel and a SavedModel that is no policy keep their messages;
  then `export_verify.load_checked` checks the integrity manifest (when the
  export has one), `saved_model.pb` and `policy_specs.pbtxt` before loading,
  so a damaged export is reported as every other reader of this package
  reports it, never served.

  Args:
    path: An export directory.

  Returns:
    The loaded object.

  Raises:
    CliError: If `path` is not a loadable policy export or is damaged.
  """
  proto = read_saved_model_proto(path)
  _check_policy_signatures(path, proto)
  _register_distribution_types()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      loaded = export_verify.load_checked(path)
  except export_errors.ExportError as e:
    raise CliError(_one_line(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('cannot load {}: {}'.format(path, _one_line(e)))
  if not hasattr(loaded, export_contract.ACTION):
    raise CliError(
        '{} is a SavedModel but not a policy export: it has no action '
        'function'.format(path)
    )
  return loaded


def _check_policy_signatures(
    path: str, proto: saved_model_pb2.SavedModel
) -> None:
  if export_contract.ACTION not in proto.meta_graphs[0].signature_def:
    raise CliError(
        '{} is a SavedModel but not a policy export: it has no action '
        'signature'.format(path)
    )


def _shape(proto_shape: Any) -> Optional[List[Optional[int]]]:
  if proto_shape.unknown_rank:
    return None
  return [d.size if d.size >= 0 else None for d in proto_shape.dim]


def _tensor_info(name: str, info: Any) -> Dict[str, Any]:
  return {
      'name': name,
      'dtype': tf.dtypes.as_dtype(info.dtype).name if info.dtype else None,
      'shape': _shape(info.tensor_shape),
  }


def signatures_from_proto(
    proto: saved_model_pb2.SavedModel,
) -> Dict[str, Dict[str, List[Dict[str, Any]]]]:
  """The flat signatures of an export with their inputs and outputs.

  Args:
    proto: A `SavedModel` proto.

  Returns:
    `{signature: {'inputs': [...], 'outputs': [...]}}`, each tensor a dict
    with `name`, `dtype` and `shape` (a list with None for unknown sizes),
    sorted by name.
  """
  result = {}
  signature_defs = proto.meta_graphs[0].signature_def
  for key in sorted(signature_defs):
    if key.startswith('__'):  # e.g. __saved_model_init_op
      continue
    signature = signature_defs[key]
    result[key] = {
        'inputs': [_tensor_info(n, signature.inputs[n])
                   for n in sorted(signature.inputs)],
        'outputs': [_tensor_info(n, signature.outputs[n])
                    for n in sorted(signature.outputs)],
    }
  return result


def _add_keywords(signatures: Dict[str, Any], loaded: Any) -> None:
  """Adds to each input the keyword that calls the loaded signature.

  TensorFlow turns input names into Python parameter names (`0/step_type`
  becomes `arg_0_step_type`); `loaded.signatures[name](**inputs)` takes the
  latter.

  Args:
    signatures: `signatures_from_proto` output, updated in place.
    loaded: The loaded export.
  """
  loaded_signatures = getattr(loaded, 'signatures', None) or {}
  for name, signature in signatures.items():
    function = loaded_signatures.get(name)
    if function is None:
      continue
    _, keywords = function.structured_input_signature
    by_name = {spec.name: keyword for keyword, spec in keywords.items()}
    for item in signature['inputs']:
      if item['name'] in by_name:
        item['keyword'] = by_name[item['name']]


def _root_children(proto: saved_model_pb2.SavedModel) -> Dict[str, str]:
  """Names of the root object's children -> their kind ('function', ...)."""
  graph = proto.meta_graphs[0].object_graph_def
  if not graph.nodes:
    return {}
  children = {}
  for reference in graph.nodes[0].children:
    node = graph.nodes[reference.node_id]
    children[reference.local_name] = node.WhichOneof('kind') or ''
  return children


def _flatten_with_paths(nest: Any, prefix: str = '') -> List[Tuple[str, Any]]:
  if isinstance(nest, dict):
    items = [(str(k), nest[k]) for k in sorted(nest)]
  elif hasattr(nest, '_fields'):  # namedtuple
    items = list(zip(nest._fields, nest))
  elif isinstance(nest, (list, tuple)):
    items = [(str(i), v) for i, v in enumerate(nest)]
  else:
    return [(prefix, nest)]
  flat = []
  for key, value in items:
    flat.extend(
        _flatten_with_paths(value, '{}/{}'.format(prefix, key) if prefix
                            else key))
  return flat


def _json_value(value: Any) -> Any:
  array = np.asarray(value)
  if array.dtype.kind in ('S', 'O'):
    decoded = np.vectorize(
        lambda v: v.decode('utf-8', 'replace') if isinstance(v, bytes) else v,
        otypes=[object])(array)
    return decoded.tolist()
  return array.tolist()


def _spec_info(path: str, spec: Any) -> Dict[str, Any]:
  info = {
      'path': path,
      'dtype': tf.dtypes.as_dtype(spec.dtype).name,
      'shape': (None if spec.shape.rank is None
                else [d for d in spec.shape.as_list()]),
  }
  if hasattr(spec, 'minimum') and hasattr(spec, 'maximum'):
    info['minimum'] = _json_value(spec.minimum)
    info['maximum'] = _json_value(spec.maximum)
  return info


def _describe_specs(specs: Dict[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
  return {
      key: [_spec_info(p, s) for p, s in _flatten_with_paths(specs[key])]
      for key in _SPEC_KEYS
  }


def _describe_policy_specs(specs: Dict[str, Any]) -> Dict[str, Any]:
  """`_describe_specs` of `export_contract.split_specs`' result."""
  return _describe_specs({
      'time_step_spec': dict(specs['time_step_spec']._asdict()),
      'action_spec': specs['action_spec'],
      'policy_state_spec': specs['policy_state_spec'],
      'info_spec': specs['info_spec'],
  })


def read_specs(
    path: str, loaded: Any = None
) -> Optional[Dict[str, List[Dict[str, Any]]]]:
  """The policy's specs, from the loaded export or `policy_specs.pbtxt`.

  Args:
    path: The export directory.
    loaded: The loaded export, if any. Exports written by this repository's
      `PolicySaver` carry their specs (`get_policy_specs`); upstream's only
      write `policy_specs.pbtxt`.

  Returns:
    `{time_step_spec, action_spec, policy_state_spec, info_spec}`, each a
    list of `{path, dtype, shape[, minimum, maximum]}`; None if the export
    has no specs.

  Raises:
    CliError: If the specs exist but cannot be decoded.
  """
  specs = None
  if loaded is not None and hasattr(loaded, 'get_policy_specs'):
    try:
      specs = policy_saver.specs_from_saved_model(loaded)
    except Exception:  # pylint: disable=broad-except
      specs = None
  if specs is not None:
    return _describe_policy_specs(specs)
  specs_file = os.path.join(path, export_contract.POLICY_SPECS_PBTXT)
  if not tf.io.gfile.exists(specs_file):
    return None
  try:
    specs = export_contract.read_specs_pbtxt(path)
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('cannot read {}: {}'.format(specs_file, _one_line(e)))
  return _describe_policy_specs(specs)


def _train_step(loaded: Any) -> Optional[int]:
  if not hasattr(loaded, 'get_train_step'):
    return None
  value = loaded.get_train_step()
  if isinstance(value, dict):
    value = next(iter(value.values()))
  return int(np.asarray(value))


def _metadata(loaded: Any) -> Dict[str, Any]:
  if not hasattr(loaded, 'get_metadata'):
    return {}
  return {str(k): _json_value(v)
          for k, v in sorted(loaded.get_metadata().items())}


def _files(path: str) -> List[Dict[str, Any]]:
  files = []
  for root, _, names in tf.io.gfile.walk(path):
    for name in names:
      full = os.path.join(root, name)
      files.append({
          'path': os.path.relpath(full, path) if '://' not in path
                  else full[len(path):].lstrip('/'),
          'bytes': tf.io.gfile.stat(full).length,
      })
  return sorted(files, key=lambda f: f['path'])


# ---------------------------------------------------------------- commands


def inspect_export(path: str) -> Dict[str, Any]:
  """Describes an export.

  Args:
    path: The export directory.

  Returns:
    A JSON-serializable dict (see the module docstring).

  Raises:
    CliError: If `path` is not a loadable policy export.
  """
  proto = read_saved_model_proto(path)
  loaded = load_export(path)
  meta_info = proto.meta_graphs[0].meta_info_def
  files = _files(path)
  children = _root_children(proto)
  signatures = signatures_from_proto(proto)
  _add_keywords(signatures, loaded)
  return {
      'export_dir': path,
      'written_by': {
          'tensorflow_version': meta_info.tensorflow_version or None,
          'tensorflow_git_version': meta_info.tensorflow_git_version or None,
      },
      'train_step': _train_step(loaded),
      'metadata': _metadata(loaded),
      # Upstream's saver exports get_train_step and get_metadata as bare
      # concrete functions; they are callable all the same.
      'functions': sorted(k for k, v in children.items()
                          if v in ('function', 'bare_concrete_function')),
      'signatures': signatures,
      'specs': read_specs(path, loaded),
      'files': files,
      'total_bytes': sum(f['bytes'] for f in files),
  }


def _import_gym() -> Any:
  with contextlib.redirect_stderr(io.StringIO()):
    # gym 0.23 prints a multi-line deprecation notice on import.
    import gym  # pylint: disable=g-import-not-at-top
  gym.logger.set_level(gym.logger.ERROR)
  return gym


_GYMNASIUM_PREFIX = 'gymnasium:'
_GYM_PREFIX = 'gym:'


def _import_gymnasium() -> Any:
  import gymnasium  # pylint: disable=g-import-not-at-top
  gymnasium.logger.min_level = gymnasium.logger.ERROR
  return gymnasium


def _env_library(name: str) -> Tuple[Any, str]:
  """The library (gymnasium or gym module) to make `name` with, and the id.

  `gymnasium:ID` and `gym:ID` pick the library; a bare id goes to Gymnasium
  if Gymnasium is installed and registers it, else to gym.

  Args:
    name: The --env value.

  Returns:
    `(module, environment id)`.

  Raises:
    CliError: If the library to use is not installed.
  """
  for prefix, importer in ((_GYMNASIUM_PREFIX, _import_gymnasium),
                           (_GYM_PREFIX, _import_gym)):
    if name.startswith(prefix):
      try:
        return importer(), name[len(prefix):]
      except ImportError as e:
        raise CliError('cannot make {!r}: {}'.format(name, _one_line(e)))
  try:
    gymnasium = _import_gymnasium()
    if name in gymnasium.registry:
      return gymnasium, name
  except ImportError:
    pass
  try:
    return _import_gym(), name
  except ImportError as e:
    raise CliError('unknown environment {!r}: Gymnasium does not register '
                   'it and gym is not installed ({})'.format(
                       name, _one_line(e)))


def _make_env(gym: Any, name: str) -> Any:
  """`gym.make(name)`; `gym` is the gymnasium or the gym module."""
  library = gym.__name__
  # gym's id was not found in Gymnasium either (see `_env_library`).
  where = ' (nor a Gymnasium one)' if library == 'gym' else ''
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      return gym.make(name)
  except gym.error.Error as e:
    raise CliError('unknown {} environment {!r}{}: {}'.format(
        library, name, where, _one_line(e)))
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('cannot create {} environment {!r}: {}'.format(
        library, name, _one_line(e)))


def _action_time_step_spec(loaded: Any) -> Any:
  concrete = loaded.action.concrete_functions[0]
  args, _ = concrete.structured_input_signature
  return args[0]


def _policy_action_specs(path: str, loaded: Any) -> Optional[List[Any]]:
  """The policy's action spec as `_spec_info` dicts, one per leaf.

  Args:
    path: The export directory.
    loaded: The loaded export.

  Returns:
    The leaves of the recorded action spec (with bounds), else of the
    `action` function's outputs (without the batch dimension), else None.
  """
  try:
    specs = read_specs(path, loaded)
  except CliError:
    specs = None
  if specs is not None:
    return specs['action_spec']
  try:
    outputs = loaded.action.concrete_functions[0].structured_outputs
    action = getattr(outputs, 'action', None)
    if action is None and isinstance(outputs, dict):
      action = outputs.get('action')
  except (AttributeError, IndexError):
    return None
  if action is None:
    return None
  return [
      _spec_info(p, tf.TensorSpec(s.shape[1:], s.dtype))
      for p, s in _flatten_with_paths(action)
  ]


def _describe_action_spec(leaves: List[Dict[str, Any]]) -> str:
  parts = []
  for leaf in leaves:
    part = '{}{} {}'.format(leaf['path'] + ': ' if leaf['path'] else '',
                            leaf['dtype'], _format_shape(leaf['shape']))
    if 'minimum' in leaf:
      part += ' in [{}, {}]'.format(_compact_bound(leaf['minimum']),
                                    _compact_bound(leaf['maximum']))
    parts.append(part)
  return '; '.join(parts) or '(none)'


def _compact_bound(bound: Any) -> str:
  """A bound as one number if all its elements are equal, else a list."""
  array = np.asarray(bound)
  if array.size and np.all(array == array.flat[0]):
    return _compact(_json_value(array.flat[0]))
  return _compact(_json_value(array))


def _outside(values: Any, low: Any, high: Any) -> bool:
  """Whether some of `values` lie outside [low, high] (float tolerance)."""
  values = np.asarray(values, np.float64)
  low = np.asarray(low, np.float64)
  high = np.asarray(high, np.float64)
  below = (values < low) & ~np.isclose(values, low, rtol=1e-6, atol=1e-6)
  above = (values > high) & ~np.isclose(values, high, rtol=1e-6, atol=1e-6)
  return bool(np.any(below) or np.any(above))


def _action_space_problem(gym: Any, space: Any,
                          leaves: List[Dict[str, Any]]) -> Optional[str]:
  """Why actions of spec `leaves` cannot be taken by `space`, or None."""
  spaces = gym.spaces
  if not isinstance(space, (spaces.Discrete, spaces.Box, spaces.MultiDiscrete,
                            spaces.MultiBinary)):
    return ('eval supports Discrete, Box, MultiDiscrete and MultiBinary '
            'action spaces')
  if len(leaves) != 1:
    return 'eval runs policies with a single action tensor'
  leaf = leaves[0]
  dtype = tf.dtypes.as_dtype(leaf['dtype'])
  shape = leaf['shape']
  bounded = 'minimum' in leaf
  if isinstance(space, spaces.Discrete):
    start = int(getattr(space, 'start', 0))
    last = start + int(space.n) - 1
    if not dtype.is_integer:
      return 'a discrete space takes integer actions'
    if shape not in ([], [1]):
      return 'a discrete space takes one scalar action'
    if bounded and _outside([np.min(leaf['minimum']),
                             np.max(leaf['maximum'])], start, last):
      return 'the environment takes actions {}..{}'.format(start, last)
    return None
  if isinstance(space, spaces.Box):
    if np.issubdtype(space.dtype, np.floating) and not dtype.is_floating:
      return 'a continuous space takes floating-point actions'
    if np.issubdtype(space.dtype, np.integer) and not dtype.is_integer:
      return 'the environment takes integer actions'
    if shape != list(space.shape):
      return 'the environment takes actions of shape {}'.format(
          _format_shape(list(space.shape)))
    if bounded and (_outside(leaf['minimum'], space.low, space.high) or
                    _outside(leaf['maximum'], space.low, space.high)):
      return 'the environment takes actions in [{}, {}]'.format(
          _compact_bound(space.low), _compact_bound(space.high))
    return None
  # MultiDiscrete, MultiBinary: integers in [0, n - 1] per element.
  if isinstance(space, spaces.MultiBinary):
    high = np.ones(space.shape, np.int64)
  else:
    high = np.asarray(space.nvec, np.int64) - 1
  if not (dtype.is_integer or dtype.is_bool):
    return 'the environment takes integer actions'
  if shape != list(high.shape):
    return 'the environment takes actions of shape {}'.format(
        _format_shape(list(high.shape)))
  if bounded and (_outside(leaf['minimum'], 0, high) or
                  _outside(leaf['maximum'], 0, high)):
    return 'the environment takes actions in [0, {}]'.format(
        _compact_bound(high))
  return None


def _check_env_compatible(gym: Any, env: Any, time_step_spec: Any,
                          action_specs: Optional[List[Dict[str, Any]]],
                          path: str, name: str) -> None:
  """Raises CliError if the export cannot run in the env.

  Args:
    gym: The gym module.
    env: The environment.
    time_step_spec: The batched time step spec of the `action` function.
    action_specs: `_policy_action_specs` (None: not checked).
    path: The export directory.
    name: The environment's id.

  Raises:
    CliError: Naming every mismatch of the observations and actions.
  """
  problems = []
  observation_spec = time_step_spec.observation
  space = env.observation_space
  if isinstance(observation_spec, tf.TensorSpec) and getattr(
      space, 'shape', None) is not None:
    expected = tuple(observation_spec.shape.as_list()[1:])
    if len(expected) != len(space.shape) or any(
        e is not None and e != s for e, s in zip(expected, space.shape)):
      problems.append(
          'expects observations of shape {} but {} gives shape {}'.format(
              list(expected), name, list(space.shape)))
  elif isinstance(space, gym.spaces.Dict) != isinstance(observation_spec,
                                                        dict):
    problems.append('expects observations structured as {} but {} gives '
                    '{}'.format(observation_spec, name, space))
  if action_specs is not None:
    reason = _action_space_problem(gym, env.action_space, action_specs)
    if reason is not None:
      problems.append('has action spec {} but {} has action space {} '
                      '({})'.format(_describe_action_spec(action_specs), name,
                                    env.action_space, reason))
  if problems:
    raise CliError(_one_line('{} {}'.format(path, ', and '.join(problems))))


def _batched_time_step(spec: Any, step_type: int, reward: float,
                       discount: float, observation: Any,
                       batch_size: int = 1) -> Any:
  """One environment step as a time step of `batch_size` identical rows."""

  def batched(leaf_spec, value):
    row = np.asarray(value, dtype=leaf_spec.dtype.as_numpy_dtype)[None]
    return tf.constant(np.repeat(row, batch_size, axis=0))

  return type(spec)(
      step_type=batched(spec.step_type, step_type),
      reward=batched(spec.reward, reward),
      discount=batched(spec.discount, discount),
      observation=tf.nest.map_structure(batched, spec.observation,
                                        observation),
  )


def _fixed_batch_size(time_step_spec: Any) -> Optional[int]:
  """The batch size the `action` function was saved with, if fixed."""
  sizes = {s.shape.as_list()[0] for s in tf.nest.flatten(time_step_spec)
           if s.shape.rank}
  sizes.discard(None)
  return sizes.pop() if len(sizes) == 1 else None


def _initial_state(loaded: Any, batch_size: int) -> Any:
  """`get_initial_state` of `batch_size` rows.

  Exports saved with a fixed batch size by upstream's saver take no argument.

  Args:
    loaded: The loaded export.
    batch_size: The rows wanted (the fixed batch size, if any).

  Returns:
    The initial policy state.
  """
  signature = (getattr(loaded, 'signatures', None) or {}).get(
      export_contract.GET_INITIAL_STATE)
  if signature is not None and not signature.structured_input_signature[1]:
    return loaded.get_initial_state()
  return loaded.get_initial_state(batch_size)


def _reset(env: Any, seed: int) -> Any:
  result = env.reset(seed=seed)
  if isinstance(result, tuple) and len(result) == 2:  # gym >= 0.26
    return result[0]
  return result


def _step(env: Any, action: Any) -> Tuple[Any, float, bool]:
  result = env.step(action)
  if len(result) == 5:  # gym >= 0.26
    observation, reward, terminated, truncated, _ = result
    return observation, float(reward), bool(terminated or truncated)
  observation, reward, done, _ = result
  return observation, float(reward), bool(done)


def evaluate_export(path: str, options: Options) -> Dict[str, Any]:
  """Runs an export in a Gymnasium or gym environment.

  `options.env` picks the library as `eval`'s summary in `COMMAND_TABLE`
  says. Episode `i` resets the environment with seed `options.seed + i`. The
  policy state starts from `get_initial_state(1)` and is fed back after each
  step. An export saved with a fixed batch size gets the environment's time
  step repeated to that many rows (and the state of that many rows); the
  first row of the action is taken.

  Args:
    path: The export directory.
    options: `env`, `episodes`, `seed` and `max_steps` are used.

  Returns:
    A JSON-serializable dict with the returns and their statistics.

  Raises:
    CliError: If the export or the environment cannot be used.
  """
  if options.episodes <= 0:
    raise CliError('--episodes must be > 0', EXIT_USAGE)
  if options.max_steps <= 0:
    raise CliError('--max_steps must be > 0', EXIT_USAGE)
  loaded = load_export(path)
  gym, env_id = _env_library(options.env)
  env = _make_env(gym, env_id)
  try:
    time_step_spec = _action_time_step_spec(loaded)
    _check_env_compatible(gym, env, time_step_spec,
                          _policy_action_specs(path, loaded), path,
                          options.env)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    batch_size = _fixed_batch_size(time_step_spec) or 1
    returns, lengths = [], []
    seeds = [options.seed + i for i in range(options.episodes)]
    for seed in seeds:
      observation = _reset(env, seed)
      state = _initial_state(loaded, batch_size)
      step_type, reward, discount = 0, 0.0, 1.0
      total, length = 0.0, 0
      for _ in range(options.max_steps):
        policy_step = loaded.action(
            _batched_time_step(time_step_spec, step_type, reward, discount,
                               observation, batch_size), state)
        state = policy_step.state
        action = np.asarray(tf.nest.flatten(policy_step.action)[0])[0]
        observation, reward, done = _step(
            env, int(action.reshape(-1)[0]) if discrete else action)
        total += reward
        length += 1
        step_type = 1
        if done:
          break
      returns.append(total)
      lengths.append(length)
  except CliError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('running {} in {} failed: {}'.format(
        path, options.env, _one_line(e)))
  finally:
    env.close()
  return {
      'export_dir': path,
      'env': options.env,
      'env_library': gym.__name__,
      'episodes': options.episodes,
      'seeds': seeds,
      'returns': returns,
      'episode_lengths': lengths,
      'average_return': float(np.mean(returns)),
      'std_return': float(np.std(returns)),
      'min_return': float(np.min(returns)),
      'max_return': float(np.max(returns)),
      'train_step': _train_step(loaded),
  }


@contextlib.contextmanager
def _native_stderr_silenced():
  """Discards what native code writes to stderr (fd 2) meanwhile.

  The TFLite converter prints MLIR diagnostics there when the builtins-only
  attempt fails, although the conversion then succeeds with select TF ops;
  a failure is still reported, as one line, from the raised exception.

  Yields:
    Nothing.
  """
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # No file descriptor 2 (e.g. embedded interpreters).
    yield
    return
  try:
    with open(os.devnull, 'w') as devnull:
      os.dup2(devnull.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _tflite_ops(model: bytes) -> List[str]:
  """Names of the ops in a TFLite model, from TFLite's model analyzer."""
  text = io.StringIO()
  try:
    with contextlib.redirect_stdout(text):
      tf.lite.experimental.Analyzer.analyze(model_content=model)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('TFLite analyzer failed: %s', e)
    return []
  return sorted(set(_TFLITE_OP.findall(text.getvalue())))


def _tflite_signatures(model: bytes) -> Optional[Dict[str, Any]]:
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      interpreter = tf.lite.Interpreter(model_content=model)
      return interpreter.get_signature_list()
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Cannot read the TFLite signatures: %s', e)
    return None


CONVERT_FORMATS = ('tflite', 'onnx')


def _write_model(model: bytes, output: str) -> None:
  output_dir = os.path.dirname(output)
  try:
    if output_dir:
      tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(output, 'wb') as f:
      f.write(model)
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('cannot write {}: {}'.format(output, _one_line(e)))


def _onnx_ops(graph: Any) -> List[str]:
  """The op types of an ONNX graph and its subgraphs (e.g. loop bodies)."""
  ops = set()
  for node in graph.node:
    ops.add(node.op_type)
    for attribute in node.attribute:
      for subgraph in list(attribute.graphs) + (
          [attribute.g] if attribute.HasField('g') else []):
        ops.update(_onnx_ops(subgraph))
  return sorted(ops)


def _convert_to_onnx(path: str, loaded: Any,
                     options: Options) -> Dict[str, Any]:
  """`convert --to=onnx` of `loaded`, read from `path`: see `convert_export`."""
  try:
    with warnings.catch_warnings(), _native_stderr_silenced():
      warnings.simplefilter('ignore')
      model, report = export_conversion.convert_action_to_onnx(
          loaded, signature_key=options.signature)
    import onnx  # pylint: disable=g-import-not-at-top
    graph = onnx.load_from_string(model).graph
  except export_errors.ExportError as e:
    raise CliError(_one_line(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('ONNX conversion of {} failed: {}'.format(
        path, _one_line(e)))
  _write_model(model, options.output)
  return {
      'export_dir': path,
      'signature': options.signature,
      'format': 'onnx',
      'output': options.output,
      'bytes': len(model),
      'opset': report.opset,
      'ops': _onnx_ops(graph),
      'inputs': list(report.input_names),
      'outputs': list(report.output_names),
      'state_outputs': dict(report.state_outputs),
      'weights': list(report.weight_names),
      'tf2onnx_version': report.tf2onnx_version,
  }


def convert_export(path: str, options: Options) -> Dict[str, Any]:
  """Converts a signature of an export to a TFLite or ONNX model file.

  Args:
    path: The export directory.
    options: `to`, `output` and `signature` are used.

  Returns:
    A JSON-serializable dict describing the model written.

  Raises:
    CliError: On a bad option, a bad export, or a failed conversion.
  """
  if options.to not in CONVERT_FORMATS:
    raise CliError('--to must be one of {}, got {!r}'.format(
        ', '.join(CONVERT_FORMATS), options.to), EXIT_USAGE)
  if not options.output:
    raise CliError('convert needs --output=FILE', EXIT_USAGE)
  proto = read_saved_model_proto(path)
  _check_policy_signatures(path, proto)
  if options.signature not in proto.meta_graphs[0].signature_def:
    raise CliError('{} has no signature {!r} (it has: {})'.format(
        path, options.signature,
        ', '.join(signatures_from_proto(proto))))
  # Checked like every other read (a damaged export is refused, not
  # converted); the TFLite converter then reads the same, checked, files.
  loaded = load_export(path)
  if options.to == 'onnx':
    return _convert_to_onnx(path, loaded, options)
  converter = getattr(policy_saver, 'convert_action_to_tflite', None)
  try:
    with warnings.catch_warnings(), _native_stderr_silenced():
      warnings.simplefilter('ignore')
      if converter is not None:
        model, report = converter(path, signature_key=options.signature)
        builtin_only = bool(report.builtin_ops_only)
        select_tf_ops = list(report.select_tf_ops)
      else:
        tflite = tf.lite.TFLiteConverter.from_saved_model(
            path, signature_keys=[options.signature])
        model = tflite.convert()
        builtin_only, select_tf_ops = True, []
  except Exception as e:  # pylint: disable=broad-except
    raise CliError('TFLite conversion of {} failed: {}'.format(
        path, _one_line(e)))
  _write_model(model, options.output)
  signatures = _tflite_signatures(model)
  return {
      'export_dir': path,
      'signature': options.signature,
      'format': 'tflite',
      'output': options.output,
      'bytes': len(model),
      'builtin_ops_only': builtin_only,
      'select_tf_ops': select_tf_ops,
      'ops': _tflite_ops(model),
      'tflite_signature': (signatures or {}).get(options.signature),
  }


def _diff_named(a: List[Dict[str, Any]],
                b: List[Dict[str, Any]],
                key: str) -> Dict[str, Any]:
  by_a = {item[key]: item for item in a}
  by_b = {item[key]: item for item in b}
  changed = []
  for name in sorted(set(by_a) & set(by_b)):
    if by_a[name] != by_b[name]:
      changed.append({key: name, 'a': by_a[name], 'b': by_b[name]})
  return {
      'only_in_a': sorted(set(by_a) - set(by_b)),
      'only_in_b': sorted(set(by_b) - set(by_a)),
      'changed': changed,
  }


def _is_empty(diff: Dict[str, Any]) -> bool:
  return not any(diff[k] for k in ('only_in_a', 'only_in_b', 'changed'))


def _variables(loaded: Any) -> List[Dict[str, Any]]:
  variables = list(getattr(loaded, 'model_variables', []))
  names = [v.name for v in variables]
  unique = len(set(names)) == len(names)
  return [{
      'name': v.name if unique else '{}#{}'.format(i, v.name),
      'dtype': v.dtype.name,
      'shape': v.shape.as_list(),
      'value': v.numpy(),
  } for i, v in enumerate(variables)]


def _diff_variables(a: List[Dict[str, Any]],
                    b: List[Dict[str, Any]]) -> Dict[str, Any]:
  """Pairs variables by position when the counts match, else by name.

  Keras numbers layer names per process (`dense_1`, `dense_2`, ...), so two
  exports of one architecture can name the same variable differently; the
  order of `model_variables` is the network's and stays the same.

  Args:
    a: `_variables` of export A.
    b: `_variables` of export B.

  Returns:
    `only_in_a`, `only_in_b` (names), `changed` (entries with the name, and
    `name_b` if B names it differently, and either `max_abs_diff` or the
    differing `a`/`b` dtype and shape) and the count of `equal` variables.
  """
  if len(a) == len(b):
    pairs = list(zip(a, b))
    only_in_a, only_in_b = [], []
  else:
    by_a = {v['name']: v for v in a}
    by_b = {v['name']: v for v in b}
    pairs = [(by_a[n], by_b[n]) for n in sorted(set(by_a) & set(by_b))]
    only_in_a = sorted(set(by_a) - set(by_b))
    only_in_b = sorted(set(by_b) - set(by_a))
  changed, equal = [], 0
  for va, vb in pairs:
    entry = {'name': va['name']}
    if va['name'] != vb['name']:
      entry['name_b'] = vb['name']
    if va['dtype'] != vb['dtype'] or va['shape'] != vb['shape']:
      entry.update(a={'dtype': va['dtype'], 'shape': va['shape']},
                   b={'dtype': vb['dtype'], 'shape': vb['shape']})
      changed.append(entry)
    elif not np.array_equal(va['value'], vb['value']):
      if va['value'].dtype.kind in 'fiub':
        entry['max_abs_diff'] = float(np.max(np.abs(
            va['value'].astype(np.float64) - vb['value'].astype(np.float64))))
      changed.append(entry)
    else:
      equal += 1
  return {
      'only_in_a': only_in_a,
      'only_in_b': only_in_b,
      'changed': changed,
      'equal': equal,
  }


def diff_exports(path_a: str, path_b: str) -> Dict[str, Any]:
  """Compares two exports.

  Args:
    path_a: An export directory.
    path_b: Another export directory.

  Returns:
    A JSON-serializable dict: per category (`signatures`, `specs`,
    `variables`, `train_step`, `metadata`) what differs, and `identical`.

  Raises:
    CliError: If either path is not a loadable policy export.
  """
  loaded = []
  signatures = []
  specs = []
  for path in (path_a, path_b):
    proto = read_saved_model_proto(path)
    signatures.append(signatures_from_proto(proto))
    loaded.append(load_export(path))
    specs.append(read_specs(path, loaded[-1]) or {})

  signature_diff = {
      'only_in_a': sorted(set(signatures[0]) - set(signatures[1])),
      'only_in_b': sorted(set(signatures[1]) - set(signatures[0])),
      'changed': {},
  }
  for name in sorted(set(signatures[0]) & set(signatures[1])):
    per_part = {}
    for part in ('inputs', 'outputs'):
      part_diff = _diff_named(signatures[0][name][part],
                              signatures[1][name][part], 'name')
      if not _is_empty(part_diff):
        per_part[part] = part_diff
    if per_part:
      signature_diff['changed'][name] = per_part

  spec_diff = {}
  for key in _SPEC_KEYS:
    part_diff = _diff_named(specs[0].get(key, []), specs[1].get(key, []),
                            'path')
    if not _is_empty(part_diff):
      spec_diff[key] = part_diff

  variable_diff = _diff_variables(_variables(loaded[0]),
                                  _variables(loaded[1]))
  steps = [_train_step(x) for x in loaded]
  metadata = [_metadata(x) for x in loaded]
  metadata_diff = {
      name: {'a': metadata[0].get(name), 'b': metadata[1].get(name)}
      for name in sorted(set(metadata[0]) | set(metadata[1]))
      if metadata[0].get(name) != metadata[1].get(name)
  }
  identical = (
      not signature_diff['only_in_a'] and not signature_diff['only_in_b']
      and not signature_diff['changed'] and not spec_diff
      and _is_empty(variable_diff) and steps[0] == steps[1]
      and not metadata_diff)
  return {
      'a': path_a,
      'b': path_b,
      'identical': identical,
      'signatures': signature_diff,
      'specs': spec_diff,
      'variables': variable_diff,
      'train_step': {'a': steps[0], 'b': steps[1],
                     'differs': steps[0] != steps[1]},
      'metadata': metadata_diff,
  }


def verify_export(path: str) -> Dict[str, Any]:
  """Runs `export_verify.verify` on `path`; the result as a dict.

  Unlike the other commands, `verify` does not load through
  `export_verify.load_checked`: it exists to read a damaged export and report
  every problem it finds (manifest mismatches included) rather than stop at
  the first, so it calls `export_verify.verify`, which resolves the version
  and checks the manifest itself.

  Args:
    path: The export directory.

  Returns:
    The `VerifyReport` as a JSON-serializable dict (`ok` tells the verdict).

  Raises:
    CliError: `path` is missing or not an export.
  """
  try:
    return export_verify.verify(path).to_json()
  except export_errors.ExportError as e:
    raise CliError(_one_line(e)) from e


def _current_version(path: str) -> export_publish.Version:
  """The version of `path` to read (see `export_publish`)."""
  try:
    return export_publish.current_version(path)
  except export_errors.ExportNotFoundError:
    # The command's own check says "no such directory".
    return export_publish.Version(export_dir=path, path=path)
  except export_errors.ExportError as e:
    raise CliError(_one_line(e)) from e


# Every read of a command comes from one version of each export: the `_run_*`
# functions resolve it once and read only that version's directory.


def _run_inspect(args: Sequence[str], options: Options) -> Dict[str, Any]:
  del options  # Unused.
  version = _current_version(args[0])
  result = inspect_export(version.path)
  result['export_dir'] = args[0]
  result['version'] = version.version_id
  return result


def _run_eval(args: Sequence[str], options: Options) -> Dict[str, Any]:
  return evaluate_export(_current_version(args[0]).path, options)


def _run_convert(args: Sequence[str], options: Options) -> Dict[str, Any]:
  return convert_export(_current_version(args[0]).path, options)


def _run_diff(args: Sequence[str], options: Options) -> Dict[str, Any]:
  del options  # Unused.
  path_a, path_b = (_current_version(path).path for path in args)
  return diff_exports(path_a, path_b)


def _run_verify(args: Sequence[str], options: Options) -> Dict[str, Any]:
  del options  # Unused.
  # `export_verify.verify` resolves the version itself.
  return verify_export(args[0])


# ---------------------------------------------------------------- output


def _format_shape(shape: Optional[List[Optional[int]]]) -> str:
  if shape is None:
    return '<unknown rank>'
  return '[{}]'.format(', '.join('None' if d is None else str(d)
                                 for d in shape))


def _compact(value: Any) -> str:
  if isinstance(value, list):
    return '[{}]'.format(', '.join(_compact(v) for v in value))
  if isinstance(value, float):
    return '{:.4g}'.format(value)
  return str(value)


def _format_tensors(items: List[Dict[str, Any]], key: str,
                    indent: str) -> List[str]:
  """One line per tensor: its name (or nest path), dtype and shape."""
  if not items:
    return [indent + '(none)']
  labels = []
  for item in items:
    label = str(item[key]) or '(root)'
    if item.get('keyword', item[key]) != item[key]:
      label += ' (keyword {})'.format(item['keyword'])
    labels.append(label)
  width = max(len(label) for label in labels)
  lines = []
  for label, item in zip(labels, items):
    line = '{}{:<{w}}  {:<8} {}'.format(
        indent, label, str(item['dtype']), _format_shape(item['shape']),
        w=width)
    if 'minimum' in item:
      line += '  min {} max {}'.format(_compact(item['minimum']),
                                       _compact(item['maximum']))
    lines.append(line)
  return lines


def _format_inspect(result: Dict[str, Any]) -> str:
  written = result['written_by']
  lines = ['Export: {}'.format(result['export_dir']),
           'Version: {}'.format(result.get('version') or '(none)'),
           'Written by TensorFlow {} ({})'.format(
               written['tensorflow_version'] or 'unknown',
               written['tensorflow_git_version'] or 'unknown'),
           'Train step: {}'.format(result['train_step']),
           'Metadata:']
  if result['metadata']:
    lines += ['  {}: {}'.format(k, v) for k, v in result['metadata'].items()]
  else:
    lines.append('  (none)')
  lines.append('Functions: {}'.format(', '.join(result['functions'])
                                      or '(none)'))
  lines.append('Signatures:')
  for name, signature in result['signatures'].items():
    lines.append('  {}'.format(name))
    lines.append('    inputs:')
    lines += _format_tensors(signature['inputs'], 'name', '      ')
    lines.append('    outputs:')
    lines += _format_tensors(signature['outputs'], 'name', '      ')
  lines.append('Specs:')
  if result['specs'] is None:
    lines.append('  (not recorded in this export)')
  else:
    for key in _SPEC_KEYS:
      lines.append('  {}:'.format(key))
      lines += _format_tensors(result['specs'][key], 'path', '    ')
  lines.append('Files ({}, {} bytes):'.format(len(result['files']),
                                              result['total_bytes']))
  lines += ['  {:>10}  {}'.format(f['bytes'], f['path'])
            for f in result['files']]
  return '\n'.join(lines)


def _format_eval(result: Dict[str, Any]) -> str:
  seeds = result['seeds']
  return '\n'.join([
      'Export: {} (train step {})'.format(result['export_dir'],
                                          result['train_step']),
      'Environment: {}, {} episodes (seeds {}..{}), made with {}'.format(
          result['env'], result['episodes'], seeds[0], seeds[-1],
          _LIBRARY_NAMES.get(result['env_library'], result['env_library'])),
      'Returns: {}'.format(' '.join('{:g}'.format(r)
                                    for r in result['returns'])),
      'Average return: {:.2f} (std {:.2f}, min {:g}, max {:g})'.format(
          result['average_return'], result['std_return'],
          result['min_return'], result['max_return']),
  ])


def _format_convert(result: Dict[str, Any]) -> str:
  lines = ['Wrote {} ({} bytes): the {!r} signature of {}'.format(
      result['output'], result['bytes'], result['signature'],
      result['export_dir'])]
  if result.get('format') == 'onnx':
    lines.append('ONNX opset {} (tf2onnx {}), {} replaceable weights.'.format(
        result['opset'], result['tf2onnx_version'], len(result['weights'])))
    lines.append('Ops: {}'.format(', '.join(result['ops'])))
    lines.append('Inputs: {}'.format(', '.join(result['inputs'])))
    lines.append('Outputs: {}'.format(', '.join(result['outputs'])))
    for output, state in sorted(result['state_outputs'].items()):
      lines.append('Feed output {} back as input {}.'.format(output, state))
    return '\n'.join(lines)
  if result['builtin_ops_only']:
    lines.append('TFLite builtin ops only.')
  else:
    lines.append('Needs select TF ops (Flex delegate): {}'.format(
        ', '.join(result['select_tf_ops']) or '(unknown)'))
  lines.append('Ops: {}'.format(', '.join(result['ops']) or '(unknown)'))
  signature = result['tflite_signature']
  if signature:
    lines.append('Inputs: {}'.format(', '.join(signature['inputs'])))
    lines.append('Outputs: {}'.format(', '.join(signature['outputs'])))
  return '\n'.join(lines)


def _format_verify(result: Dict[str, Any]) -> str:
  lines = ['Export: {}'.format(result['export_dir']),
           'Version: {}'.format(result.get('version') or '(none)'),
           'Manifest: {}'.format(result['manifest']),
           'Train step: {}'.format(result['train_step']),
           'Replayed: {}'.format(', '.join(result['replayed']) or '(none)'),
           'File system / Python ops:']
  lines += ['  {} in {}'.format(op, fn) for fn, op in result['risky_ops']]
  if not result['risky_ops']:
    lines.append('  (none)')
  if result.get('uncovered_files'):
    lines.append('Files not covered by the manifest (added after the save):')
    lines += ['  ' + f for f in result['uncovered_files']]
  if result.get('converted'):
    lines.append('Converted models (equivalence recorded at save):')
    lines += ['  {}: {}, {}; checked again: {}'.format(
        name, entry['notion'],
        'equivalent' if entry['equivalent'] else 'not equivalent',
        entry['check']) for name, entry in sorted(result['converted'].items())]
  lines.append('Problems:')
  lines += ['  ' + p for p in result['problems']] or ['  (none)']
  lines.append('OK' if result['ok'] else 'FAILED')
  return '\n'.join(lines)


def _format_diff(result: Dict[str, Any]) -> str:
  lines = ['A: {}'.format(result['a']), 'B: {}'.format(result['b'])]
  signatures = result['signatures']
  if not (signatures['only_in_a'] or signatures['only_in_b']
          or signatures['changed']):
    lines.append('Signatures: same')
  else:
    lines.append('Signatures: differ')
    for side in ('only_in_a', 'only_in_b'):
      if signatures[side]:
        lines.append('  {}: {}'.format(_SIDE[side],
                                       ', '.join(signatures[side])))
    for name, parts in signatures['changed'].items():
      for part, part_diff in parts.items():
        for side in ('only_in_a', 'only_in_b'):
          if part_diff[side]:
            lines.append('  {} {} {}: {}'.format(
                name, part, _SIDE[side], ', '.join(part_diff[side])))
        for change in part_diff['changed']:
          lines.append('  {} {} {}: {} {} vs {} {}'.format(
              name, part, change['name'], change['a']['dtype'],
              _format_shape(change['a']['shape']), change['b']['dtype'],
              _format_shape(change['b']['shape'])))
  if not result['specs']:
    lines.append('Specs: same')
  else:
    lines.append('Specs: differ')
    for key, part_diff in result['specs'].items():
      for side in ('only_in_a', 'only_in_b'):
        if part_diff[side]:
          lines.append('  {} {}: {}'.format(
              key, _SIDE[side],
              ', '.join(p or '(root)' for p in part_diff[side])))
      for change in part_diff['changed']:
        lines.append('  {} {}: {} vs {}'.format(
            key, change['path'] or '(root)',
            {k: v for k, v in change['a'].items() if k != 'path'},
            {k: v for k, v in change['b'].items() if k != 'path'}))
  variables = result['variables']
  if _is_empty(variables):
    lines.append('Variables: same ({} equal)'.format(variables['equal']))
  else:
    lines.append('Variables: differ ({} equal, {} changed, {} only in A, '
                 '{} only in B)'.format(
                     variables['equal'], len(variables['changed']),
                     len(variables['only_in_a']),
                     len(variables['only_in_b'])))
    for change in variables['changed']:
      name = change['name']
      if 'name_b' in change:
        name += ' (B: {})'.format(change['name_b'])
      if 'max_abs_diff' in change:
        lines.append('  {}: max abs diff {:g}'.format(
            name, change['max_abs_diff']))
      elif 'a' in change:
        lines.append('  {}: {} {} vs {} {}'.format(
            name, change['a']['dtype'], _format_shape(change['a']['shape']),
            change['b']['dtype'], _format_shape(change['b']['shape'])))
      else:
        lines.append('  {}: values differ'.format(name))
    for side in ('only_in_a', 'only_in_b'):
      for name in variables[side]:
        lines.append('  {} {}'.format(name, _SIDE[side]))
  step = result['train_step']
  lines.append('Train step: {}'.format(
      '{} vs {}'.format(step['a'], step['b']) if step['differs']
      else 'same ({})'.format(step['a'])))
  if result['metadata']:
    lines.append('Metadata: differ')
    for name, values in result['metadata'].items():
      lines.append('  {}: {} vs {}'.format(name, values['a'], values['b']))
  else:
    lines.append('Metadata: same')
  lines.append('The exports are {}.'.format(
      'identical' if result['identical'] else 'different'))
  return '\n'.join(lines)


# ---------------------------------------------------------------- commands


def _exits_ok(result: Dict[str, Any]) -> int:
  del result  # Unused: the command ran, whatever it found.
  return EXIT_OK


def _exits_1_unless_ok(result: Dict[str, Any]) -> int:
  return EXIT_OK if result['ok'] else EXIT_FAILURE


_DIR = ('DIR', 'A policy export directory.')


@dataclasses.dataclass(frozen=True)
class Command:
  """One command of the tool: all that `main`, the help and the checks need.

  A new command is one `COMMAND_TABLE` entry (and its run and format
  functions, and any flag of its own).

  Attributes:
    name: The command word: `saved_policy_cli NAME ...`.
    arguments: `(NAME, help)` of each positional argument (a directory), in
      order; the command takes exactly these.
    flags: Names of the flags only this command uses. Flags no command lists
      (e.g. --json) apply to every command.
    usage: The usage line after `saved_policy_cli NAME`.
    summary: What the command does, one paragraph (printed re-wrapped).
    run: `run(args, options)`: the result (a JSON-serializable dict) for the
      positional arguments `args`; raises `CliError`.
    format_text: The result as text for people.
    exit_code: The exit code for a result (a failure that raises
      `CliError` exits with its code instead).
  """

  name: str
  arguments: Tuple[Tuple[str, str], ...]
  flags: Tuple[str, ...]
  usage: str
  summary: str
  run: Callable[[Sequence[str], Options], Dict[str, Any]]
  format_text: Callable[[Dict[str, Any]], str]
  exit_code: Callable[[Dict[str, Any]], int] = _exits_ok


COMMAND_TABLE = (
    Command(
        name='inspect',
        arguments=(_DIR,),
        flags=(),
        usage='DIR [--json]',
        summary=(
            'Signatures with their input and output names, shapes and '
            "dtypes; the policy's specs; train step; metadata; the export's "
            'functions; its files and sizes; the TensorFlow version that '
            'wrote it.'),
        run=_run_inspect,
        format_text=_format_inspect,
    ),
    Command(
        name='eval',
        arguments=(_DIR,),
        flags=('env', 'episodes', 'seed', 'max_steps'),
        usage=('DIR [--env=CartPole-v0] [--episodes=10] [--seed=0] '
               '[--max_steps=10000] [--json]'),
        summary=(
            'Runs the export in a Gymnasium or gym environment, one episode '
            'per seed (--seed, --seed+1, ...), and reports the returns. '
            '--env=ID is made with Gymnasium if Gymnasium registers ID, else '
            'with gym (so `CartPole-v1` runs in Gymnasium and an id only the '
            'old gym knows still works); `gymnasium:ID` or `gym:ID` picks the '
            'library explicitly.'),
        run=_run_eval,
        format_text=_format_eval,
    ),
    Command(
        name='convert',
        arguments=(_DIR,),
        flags=('to', 'output', 'signature'),
        usage=('DIR [--to=tflite|onnx] --output=FILE [--signature=action] '
               '[--json]'),
        summary=(
            'Writes the `action` signature (or --signature) as a TFLite model '
            '(--to=tflite, the default) and reports the ops it uses and '
            'whether it needs select TF ops (Flex), or as an ONNX model '
            '(--to=onnx, for onnxruntime) and reports its opset, ops, inputs '
            'and outputs (a state output `next_<key>` is fed back as input '
            '`<key>`) and its replaceable weights.'),
        run=_run_convert,
        format_text=_format_convert,
    ),
    Command(
        name='diff',
        arguments=(('DIR_A', 'A policy export directory.'),
                   ('DIR_B', 'The policy export directory to compare it '
                    'with.')),
        flags=(),
        usage='DIR_A DIR_B [--json]',
        summary=(
            'Which signatures, specs and variables (model variables, train '
            'step, metadata) differ between two exports. Exits 0 either way; '
            '`identical` in the --json output tells.'),
        run=_run_diff,
        format_text=_format_diff,
    ),
    Command(
        name='verify',
        arguments=(_DIR,),
        flags=(),
        usage='DIR [--json]',
        summary=(
            "Checks the export's integrity manifest, lists graph ops that "
            'touch files or run Python, loads it in a fresh process, checks '
            'signatures and specs and replays the reference inputs recorded '
            'at save time (see `export_verify`). Exits 1 if anything is '
            'wrong.'),
        run=_run_verify,
        format_text=_format_verify,
        exit_code=_exits_1_unless_ok,
    ),
)
COMMANDS = tuple(command.name for command in COMMAND_TABLE)
_COMMANDS_BY_NAME = {command.name: command for command in COMMAND_TABLE}


def _command(name: str) -> Command:
  """The `COMMAND_TABLE` entry named `name`; a usage error if there is none."""
  if name not in _COMMANDS_BY_NAME:
    raise CliError(
        'unknown command {!r}; expected one of: {}'.format(
            name, ', '.join(COMMANDS)), EXIT_USAGE)
  return _COMMANDS_BY_NAME[name]


def run_command(command: str, args: Sequence[str],
                options: Options) -> Dict[str, Any]:
  """Runs one command.

  Args:
    command: One of `COMMANDS`.
    args: Its positional arguments (directories).
    options: The flag values.

  Returns:
    The command's result, a JSON-serializable dict.

  Raises:
    CliError: On a usage error (exit code 2) or a failure (exit code 1).
  """
  entry = _command(command)
  expected = len(entry.arguments)
  if len(args) != expected:
    raise CliError(
        '{} takes {} directory argument{}, got {}: {}'.format(
            command, expected, 's' if expected > 1 else '', len(args),
            ' '.join(args) or '(none)'), EXIT_USAGE)
  return entry.run(args, options)


def format_text(command: str, result: Dict[str, Any]) -> str:
  """Formats a command's result for people.

  Args:
    command: One of `COMMANDS`.
    result: What `run_command` returned for it.

  Returns:
    The text, without a final newline.
  """
  return _COMMANDS_BY_NAME[command].format_text(result)


# ---------------------------------------------------------------- main


_HELP_ARGS = ('-h', '--help', '-help', '--helpshort')
_WIDTH = 79


def _flag_lines(holders: Sequence[Any], command: Optional[str]) -> List[str]:
  """`--name: help (default: ...)` of each flag, for `command`'s help.

  Args:
    holders: The flags' `FlagHolder`s.
    command: The command whose help this is (its name prefixes the help of
      its own flags and is dropped), or None for the tool's help.

  Returns:
    One line per flag (wrapped for a command's help), then `--help`.
  """
  lines = []
  for holder in holders:
    flag = flags.FLAGS[holder.name]
    if command is None:
      lines.append('  --{}: {} (default: {})'.format(
          flag.name, flag.help, flag.default_as_str))
      continue
    text, own = flag.help, '{}: '.format(command)
    if text.startswith(own):
      text = text[len(own):]
      text = text[:1].upper() + text[1:]
    lines.append(textwrap.fill(
        '--{}: {} (default: {})'.format(flag.name, text, flag.default_as_str),
        _WIDTH, initial_indent='  ', subsequent_indent='      '))
  lines.append('  --help: {} this help.'.format(
      'show' if command is None else 'Show'))
  return lines


def _usage() -> str:
  """The tool's help: the module docstring around every command's usage."""
  title, _, rest = __doc__.strip().split('\n\n', 2)
  lines = [title, '', 'Usage:', '']
  lines += [textwrap.fill('{} {} {}'.format(PROGRAM, c.name, c.usage), _WIDTH,
                          initial_indent='  ', subsequent_indent='      ')
            for c in COMMAND_TABLE]
  lines += ['  {} COMMAND --help'.format(PROGRAM), '', 'Commands:', '']
  width = max(len(name) for name in COMMANDS)
  for c in COMMAND_TABLE:
    # Two columns narrower than elsewhere: the width the summaries had when
    # they were hand-wrapped in the module docstring.
    lines.append(textwrap.fill(
        c.summary, _WIDTH - 2, initial_indent='  {:<{w}}  '.format(c.name,
                                                               w=width),
        subsequent_indent=' ' * (width + 4)))
  lines += ['', rest, '', 'Flags:']
  lines += _flag_lines(_FLAG_HOLDERS, None)
  return '\n'.join(lines) + '\n'


def _command_usage(command: str) -> str:
  """The help of one command: usage, summary, arguments and flags.

  The flags are the command's own (`Command.flags`), then those of every
  command (listed by no command).

  Args:
    command: One of `COMMANDS`.

  Returns:
    The help text.
  """
  entry = _COMMANDS_BY_NAME[command]
  found = re.search(r'^(Exit codes:.*(?:\n.+)*)', __doc__, re.M)
  lines = [textwrap.fill(
      'Usage: {} {} {}'.format(PROGRAM, command, entry.usage), _WIDTH,
      subsequent_indent='    '), '']
  lines += [textwrap.fill(entry.summary, _WIDTH), '', 'Arguments:']
  lines += ['  {}: {}'.format(name, text) for name, text in entry.arguments]
  lines += ['', 'Flags:']
  by_name = {holder.name: holder for holder in _FLAG_HOLDERS}
  taken = {name for c in COMMAND_TABLE for name in c.flags}
  lines += _flag_lines(
      [by_name[name] for name in entry.flags] +
      [h for h in _FLAG_HOLDERS if h.name not in taken], command)
  if found:
    lines += ['', textwrap.fill(' '.join(found.group(1).split()), _WIDTH)]
  return '\n'.join(lines) + '\n'


def _command_in(args: Sequence[str]) -> Optional[str]:
  """The first positional argument (the command) of `args`, if any."""
  takes_value = False
  for arg in args:
    if takes_value:
      takes_value = False
      continue
    if arg == '--':
      break
    if arg.startswith('-'):
      name = arg.lstrip('-')
      # `--flag value`: the value is not the command.
      takes_value = ('=' not in name and name in flags.FLAGS and
                     not flags.FLAGS[name].boolean)
      continue
    return arg
  return None


def _report_error(message: str, exit_code: int, as_json: bool) -> int:
  if as_json:
    print(json.dumps({'error': message, 'exit_code': exit_code}))
  sys.stderr.write('{}: error: {}\n'.format(PROGRAM, message))
  sys.stderr.flush()
  return exit_code


def parse_flags(argv: Sequence[str]) -> List[str]:
  """Parses flags; `--help` prints usage and exits 0, bad flags exit 2.

  `COMMAND --help` (or `--help COMMAND`) prints that command's help; a bare
  `--help`, or one with an unknown command, the tool's.

  Args:
    argv: The command line, program name first.

  Returns:
    The program name and the positional arguments.
  """
  args = list(argv[1:])
  if any(arg in _HELP_ARGS for arg in args):
    command = _command_in([a for a in args if a not in _HELP_ARGS])
    sys.stdout.write(
        _command_usage(command) if command in COMMANDS else _usage())
    sys.exit(EXIT_OK)
  try:
    return flags.FLAGS(list(argv))
  except flags.Error as e:
    as_json = '--json' in argv
    sys.exit(_report_error('{} (see --help)'.format(_one_line(e)),
                           EXIT_USAGE, as_json))


def main(argv: Sequence[str]) -> int:
  """Runs the command named by `argv[1]`; returns the exit code."""
  as_json = _JSON.value
  if not flags.FLAGS['verbosity'].present:
    # absl logs INFO to stderr under app.run; keep stderr for errors.
    logging.set_verbosity(logging.WARNING)
  if len(argv) < 2:
    return _report_error(
        'no command given; expected one of: {} (see --help)'.format(
            ', '.join(COMMANDS)), EXIT_USAGE, as_json)
  # Each field of `Options` is the flag of its name.
  options = Options(**{field.name: flags.FLAGS[field.name].value
                       for field in dataclasses.fields(Options)})
  if options.output:
    options.output = resolve_path(options.output)
  command, args = argv[1], [resolve_path(a) for a in argv[2:]]
  try:
    result = run_command(command, args, options)
  except CliError as e:
    message = str(e)
    if e.exit_code == EXIT_USAGE:
      message += ' (see --help)'
    return _report_error(message, e.exit_code, as_json)
  except Exception as e:  # pylint: disable=broad-except
    logging.debug('Unexpected error', exc_info=True)
    return _report_error(
        '{}: {}'.format(type(e).__name__, _one_line(e)), EXIT_FAILURE,
        as_json)
  if as_json:
    print(json.dumps(result, indent=2))
  else:
    print(format_text(command, result))
  return _COMMANDS_BY_NAME[command].exit_code(result)


def run() -> None:
  """Entry point: `saved_policy_cli COMMAND ARGS... [flags]`."""
  app.run(main, flags_parser=parse_flags)


if __name__ == '__main__':
  run()
