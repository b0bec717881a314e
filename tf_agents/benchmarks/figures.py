# coding=utf-8
"""What the PolicySaver benchmark measures (`METRICS`) and its `TARGETS`.

Figures, per policy, for ours and upstream's (each a median over samples
taken alternately, the order rotating every repetition):

* `first_save`: the `PolicySaver` constructor plus the first `save()` into a
  new directory (`first_save_call`: that `save()` alone);
* `repeated_save`: `save()` again by the same saver into the same directory
  after new weights were assigned to the policy's variables;
* `save_checkpoint`: each of 4 successive `save_checkpoint()` calls of the
  saver, new weights assigned before each, into new directories (the
  learner's steady state after its `save()`);
* `load`: `tf.saved_model.load` of the export;
* `first_action`: the first `action(time_step, policy_state)` of the loaded
  object (batch 1); `action_b1`, `action_b64`: its steady latency at batch 1
  and 64 (each call timed, the policy state fed back);
* `runtime_step_saved_model`, `runtime_step_tflite`: one step of the Python
  runtime on unbatched numpy time steps (one environment, as `PyDriver`
  drives it): ours is `saved_policy.SavedPolicy(export_dir, backend=...)`
  (`'tflite'` only when that backend is exact for the policy, i.e. when
  `backend='auto'` picks it), upstream's is `py_tf_eager_policy.
  SavedModelPyTFEagerPolicy` on upstream's export (the same upstream samples
  serve both rows); `..._b64`: the same at batch 64 (a batched environment;
  upstream's runtime with `batch_time_steps=False`);
* `numpy_step`, `numpy_step_b64` (ours only, largest MLP only): a plain NumPy
  greedy forward pass of the export's weights at batch 1 and 64, the
  memory-bandwidth floor of any runtime of those weights;
* `construct_<backend>`, `update_checkpoint_<backend>`,
  `update_in_place_<backend>` for the backends `'saved_model'` and `'auto'`
  (the default): the runtime's constructor; `update_from_checkpoint` of a
  checkpoint written by our `save_checkpoint()` with new weights; and the
  in-place update of `ReverbVariableContainer.update` (`v.assign(x)` for
  every variable of `variables()`, numpy values) followed by one `action()`.
  Upstream's side is `SavedModelPyTFEagerPolicy(load_specs_from_pbtxt=True)`
  doing the same. Both runtimes load the same export (our saver's) and read
  the same checkpoint, so these figures compare the runtimes alone. For
  deterministic policies each update is checked: after it, ours must return
  upstream's actions on 8 probe time steps; a failed check is reported with
  the figure and fails its target;
* `empty_poll` (ours only): `SavedPolicy.update_from_directory(export_dir)`
  when nothing was published since the last update, with the `tf.io.gfile`
  calls it makes (counted by wrapping them);
* `export_size`: bytes of the files of the export's current version (ours
  publishes each save as a version under `.policy_versions/`, hard-linked at
  the top of the export directory, and keeps the previous version too; a
  version is what a reader loads and what a copy without `.policy_versions`
  holds);
* `peak_memory_first_save`, `peak_memory_repeated_save` (largest MLP only):
  the peak resident memory during constructor + first `save()`, and during a
  repeated `save()`, above the resident memory just before it, each saver in
  its own child process (`memory_child`).

Every figure has a target (`TARGETS`), each a ratio of medians from the same
run: repeated save of the small MLP <= 0.25 of upstream's; our `save()` after
new weights of the largest MLP <= 1.2 times our own `save_checkpoint` of it;
Python runtime step of the small MLP, the LSTM and the `ActorPolicy` at
batch 1 and 64 with the fastest exact (equivalent) backend <= 0.05, and of
the small MLP with the SavedModel backend <= 0.5 of upstream's; the largest
MLP's fastest step <= 1.2 times the NumPy forward pass at batch 1 and 64;
every other figure <= 1.0 of upstream's; and the empty poll makes at most one file
read (an open or a stat) and no directory listing.
"""

import dataclasses

from tf_agents.benchmarks import cases

# Threshold of the ratio ours/upstream of every figure without a more
# specific target.
DEFAULT_THRESHOLD = 1.0

# The `versus` of the targets on file-system calls of one empty poll.
FILE_READS = 'file_reads'
FILE_LISTINGS = 'file_listings'
FASTEST_EXACT = 'fastest_exact'
OURS_PREFIX = 'ours:'

RUNTIME_BACKENDS = ('saved_model', 'auto')


@dataclasses.dataclass(frozen=True)
class Metric:
  """A figure measured per policy.

  Attributes:
    key: Identifier in the JSON.
    label: Description for the figures table.
    short: Name of its default target.
    unit: `'s'` (seconds) or `'bytes'`.
    upstream: Whether upstream's side is measured too (else ours only).
    memory_only: Only measured for the peak-memory policy (the largest MLP).
  """

  key: str
  label: str
  short: str
  unit: str
  upstream: bool = True
  memory_only: bool = False


_UPSTREAM_RUNTIME = '(upstream: SavedModelPyTFEagerPolicy)'


# The runtime figures: key prefix, description and short label, each
# completed with the backend.
_RUNTIME_FIGURES = (
    ('construct_', 'runtime constructor, same export: SavedPolicy backend {}',
     'runtime constructor, backend {}'),
    ('update_checkpoint_',
     'update_from_checkpoint(new checkpoint): SavedPolicy backend {}',
     'update_from_checkpoint, backend {}'),
    ('update_in_place_',
     'in-place update (assign every variable) + one action(): SavedPolicy '
     'backend {}', 'in-place update + action, backend {}'),
)


def _runtime_metrics():
  """The construction and update figures, one per our runtime backend."""
  return [
      Metric(prefix + backend,
             description.format(backend) + ' ' + _UPSTREAM_RUNTIME,
             label.format(backend), 's')
      for prefix, description, label in _RUNTIME_FIGURES
      for backend in RUNTIME_BACKENDS
  ]


METRICS = tuple([
    Metric('first_save', 'constructor + first save()',
           'constructor + first save', 's'),
    Metric('first_save_call', 'first save() alone', 'first save() alone',
           's'),
    Metric('repeated_save', 'save() after new weights, same saver & dir',
           'save() after new weights', 's'),
    Metric('save_checkpoint', 'save_checkpoint()', 'save_checkpoint()', 's'),
    Metric('load', 'tf.saved_model.load', 'load', 's'),
    Metric('first_action', 'first action() after load, batch 1',
           'first action() after load', 's'),
    Metric('action_b1', 'steady action(), loaded object, batch 1',
           'action(), loaded object, batch 1', 's'),
    Metric('action_b64', 'steady action(), loaded object, batch 64',
           'action(), loaded object, batch 64', 's'),
    Metric('runtime_step_saved_model',
           'Python runtime step, batch 1: SavedPolicy saved_model backend '
           + _UPSTREAM_RUNTIME,
           'runtime step, batch 1, SavedModel backend', 's'),
    Metric('runtime_step_tflite',
           'Python runtime step, batch 1: SavedPolicy tflite backend, if '
           'exact ' + _UPSTREAM_RUNTIME,
           'runtime step, batch 1, TFLite backend', 's'),
    Metric('runtime_step_saved_model_b64',
           'Python runtime step, batch 64: SavedPolicy saved_model backend '
           + _UPSTREAM_RUNTIME,
           'runtime step, batch 64, SavedModel backend', 's'),
    Metric('runtime_step_tflite_b64',
           'Python runtime step, batch 64: SavedPolicy tflite backend, if '
           'exact ' + _UPSTREAM_RUNTIME,
           'runtime step, batch 64, TFLite backend', 's'),
    Metric('numpy_step', 'NumPy forward pass of the same weights, batch 1 '
           '(the memory-bandwidth floor; largest MLP only)',
           'NumPy forward pass, batch 1', 's', upstream=False,
           memory_only=True),
    Metric('numpy_step_b64', 'NumPy forward pass of the same weights, '
           'batch 64 (largest MLP only)', 'NumPy forward pass, batch 64', 's',
           upstream=False, memory_only=True),
] + _runtime_metrics() + [
    Metric('empty_poll',
           'empty poll: update_from_directory(export_dir), nothing new',
           'empty poll', 's', upstream=False),
    Metric('export_size', 'export size on disk, current version',
           'export size', 'bytes'),
    Metric('peak_memory_first_save',
           'peak RSS above baseline, constructor + first save()',
           'peak memory, constructor + first save', 'bytes',
           memory_only=True),
    Metric('peak_memory_repeated_save',
           'peak RSS above baseline, save() after new weights',
           'peak memory, save() after new weights', 'bytes',
           memory_only=True),
])
METRICS_BY_KEY = {metric.key: metric for metric in METRICS}


@dataclasses.dataclass(frozen=True)
class TargetSpec:
  """A goal on a figure.

  Attributes:
    name: Description for the table.
    metric: Key of the figure (ours is the numerator of a ratio).
    threshold: The value must be <= this.
    policy: Policy name; `'small_mlp'`, or `'largest_mlp'` (the
      peak-memory policy), resolved per run; or `'*'`: every policy with the
      figure that has no more specific target on it (by policy name,
      `'small_mlp'` or `'largest_mlp'`) comparing with upstream.
    versus: `'upstream'`: the ratio ours/upstream of the figure's medians;
      `'ours:<key>'`: the ratio of our medians of `metric` and `<key>`;
      `FASTEST_EXACT`: our fastest exact runtime backend's step over
      upstream's runtime step; `FILE_READS` / `FILE_LISTINGS`: the most
      file opens and stats / directory listings of one call (a count).
  """

  name: str
  metric: str
  threshold: float
  policy: str
  versus: str = cases.UPSTREAM

  @property
  def kind(self) -> str:
    """`'count'` for file-operation targets, else `'ratio'`."""
    return 'count' if self.versus in (FILE_READS, FILE_LISTINGS) else 'ratio'

  @property
  def compares_with_upstream(self) -> bool:
    """Whether it is a ratio of this figure over upstream's."""
    return self.versus in (cases.UPSTREAM, FASTEST_EXACT)


SPECIFIC_TARGETS = (
    TargetSpec('repeated save, small MLP', 'repeated_save', 0.25,
               'small_mlp'),
    TargetSpec(
        'save() after new weights vs OUR save_checkpoint(), largest MLP',
        'repeated_save',
        1.2,
        'largest_mlp',
        versus=OURS_PREFIX + 'save_checkpoint',
    ),
    TargetSpec(
        'runtime step, small MLP, batch 1, fastest exact backend',
        'runtime_step_tflite',
        0.05,
        'small_mlp',
        versus=FASTEST_EXACT,
    ),
) + tuple(
    TargetSpec(
        'runtime step, {}, batch {}, fastest equivalent backend'.format(
            what, batch), metric, 0.05, policy, versus=FASTEST_EXACT)
    for metric, batch in (('runtime_step_tflite', 1),
                          ('runtime_step_tflite_b64', 64))
    for policy, what in (('q_rnn_lstm', 'LSTM'),
                         ('actor_normal', 'ActorPolicy'))
) + (
    TargetSpec('runtime step, small MLP, batch 64, fastest exact backend',
               'runtime_step_tflite_b64', 0.05, 'small_mlp',
               versus=FASTEST_EXACT),
    TargetSpec('runtime step vs a NumPy forward pass, largest MLP, batch 1',
               'runtime_step_tflite', 1.2, 'largest_mlp',
               versus=OURS_PREFIX + 'numpy_step'),
    TargetSpec('runtime step vs a NumPy forward pass, largest MLP, batch 64',
               'runtime_step_tflite_b64', 1.2, 'largest_mlp',
               versus=OURS_PREFIX + 'numpy_step_b64'),
    TargetSpec('runtime step, small MLP, batch 1, SavedModel backend',
               'runtime_step_saved_model', 0.5, 'small_mlp'),
    TargetSpec('empty poll: file reads (opens + stats)', 'empty_poll', 1,
               '*', versus=FILE_READS),
    TargetSpec('empty poll: directory listings', 'empty_poll', 0, '*',
               versus=FILE_LISTINGS),
)

TARGETS = SPECIFIC_TARGETS + tuple(
    TargetSpec(metric.short, metric.key, DEFAULT_THRESHOLD, '*')
    for metric in METRICS
    if metric.upstream
)
