# coding=utf-8
r"""Trains DQN on CartPole-v1, exports it with PolicySaver, and runs the export.

A new module (upstream tf-agents has no counterpart). With no arguments and
no network it:

1. trains a DQN agent on Gymnasium's `CartPole-v1` (`--env`; an id Gymnasium
   does not register is made with gym, and `gymnasium:ID` / `gym:ID` pick
   the library, see `evaluate_export.resolve_env`) for `--num_iterations`
   steps (one to two minutes on two CPU cores), printing the greedy
   policy's average return every `--eval_interval` steps;
2. every `--export_interval` steps (and at the start and the end) exports the
   greedy policy with `PolicySaver`: `save()` rewrites the SavedModel in
   `<output_dir>/policy/saved_model` (always the latest policy) and
   `save_checkpoint()` adds
   `<output_dir>/policy/checkpoints/policy_checkpoint_<step>`;
3. runs `evaluate_export.py` in a fresh Python process that never imports
   `tf_agents`: it loads the latest export with plain `tf.saved_model.load`,
   plays `--eval_episodes` episodes with the same seeds as the in-memory
   evaluation, and restores the latest checkpoint into the loaded export;
4. prints both average returns (they are equal: the policy is greedy and the
   seeds are the same), writes `learning_curve.png` (average return against
   training step) and `summary.json`, and lists what it wrote.

It exits with status 1 if the fresh process fails or its returns differ from
the in-memory policy's.

Usage:

  tools/bazel run //tf_agents/examples:dqn_cartpole_export
  tools/bazel run //tf_agents/examples:dqn_cartpole_export -- \
      --output_dir=/tmp/cartpole --num_iterations=20000 --seed=1

Under `bazel run` the default `--output_dir` is `outputs/dqn_cartpole_export`
in the workspace; otherwise it is relative to the current directory.
"""

import os

# tf-agents needs Keras 2 (tf_keras) on TensorFlow >= 2.16; `bazel run` does
# not pass the build's environment, so set it before TensorFlow is imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import contextlib
import dataclasses
import io
import json
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple
import warnings

from absl import app
from absl import flags
from absl import logging
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

with contextlib.redirect_stderr(io.StringIO()):
  # gym 0.23 prints a multi-line deprecation notice on import.
  import gym
import gymnasium
from tf_agents.agents.dqn import dqn_agent
from tf_agents.drivers import dynamic_step_driver
from tf_agents.environments import suite_gym
from tf_agents.environments import suite_gymnasium
from tf_agents.environments import tf_py_environment
from tf_agents.examples import evaluate_export
from tf_agents.networks import q_network
from tf_agents.policies import policy_saver
from tf_agents.policies import random_tf_policy
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.utils import common
# pylint: enable=g-import-not-at-top,wrong-import-position

# Gymnasium's CartPole-v1 (episodes of up to 500 steps).
ENV_NAME = evaluate_export.DEFAULT_ENV
# Evaluation episodes use seeds `seed + _EVAL_SEED_OFFSET + i`, away from the
# training environment's seed.
_EVAL_SEED_OFFSET = 10000
_CHECKPOINT_PREFIX = 'policy_checkpoint_'

_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir',
    None,
    'Where to write the exports, the learning curve and the summary. Default: '
    '$BUILD_WORKSPACE_DIRECTORY/outputs/dqn_cartpole_export under `bazel '
    'run`, else ./outputs/dqn_cartpole_export.',
)
_NUM_ITERATIONS = flags.DEFINE_integer(
    'num_iterations', 10000, 'Training iterations (one env step each).'
)
_EVAL_INTERVAL = flags.DEFINE_integer(
    'eval_interval', 1000, 'Evaluate the greedy policy every N iterations.'
)
_EVAL_EPISODES = flags.DEFINE_integer(
    'eval_episodes', 10, 'Episodes per evaluation (one seed each).'
)
_EXPORT_INTERVAL = flags.DEFINE_integer(
    'export_interval', 2500, 'Export the policy every N iterations.'
)
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_ENV = flags.DEFINE_string(
    'env', ENV_NAME,
    'Environment id: Gymnasium if it registers the id, else gym; '
    '`gymnasium:ID` or `gym:ID` picks the library.')
_INITIAL_COLLECT_STEPS = flags.DEFINE_integer(
    'initial_collect_steps', 1000, 'Random-policy steps before training.'
)
_LEARNING_RATE = flags.DEFINE_float('learning_rate', 5e-4, 'Adam step size.')
_FC_LAYER_PARAMS = flags.DEFINE_list(
    'fc_layer_params', ['64', '64'], 'Hidden layer sizes of the Q-network.'
)
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'Training batch size.')


@dataclasses.dataclass
class ExampleConfig:
  """Settings of one run; `main` fills them from the flags."""

  output_dir: str
  env_name: str = ENV_NAME
  num_iterations: int = 10000
  eval_interval: int = 1000
  eval_episodes: int = 10
  export_interval: int = 2500
  seed: int = 0
  initial_collect_steps: int = 1000
  learning_rate: float = 5e-4
  fc_layer_params: Tuple[int, ...] = (64, 64)
  batch_size: int = 64
  target_update_period: int = 200
  epsilon_greedy: float = 0.1
  replay_buffer_capacity: int = 100000

  def validate(self) -> None:
    """Raises ValueError naming the first invalid setting."""
    for name in ('num_iterations', 'eval_interval', 'eval_episodes',
                 'export_interval', 'batch_size'):
      if getattr(self, name) <= 0:
        raise ValueError(
            '--{} must be > 0, got {}'.format(name, getattr(self, name))
        )
    if self.initial_collect_steps < 2:
      raise ValueError(
          '--initial_collect_steps must be >= 2 (one training sample), got '
          '{}'.format(self.initial_collect_steps)
      )
    if not self.fc_layer_params or min(self.fc_layer_params) <= 0:
      raise ValueError(
          '--fc_layer_params must be positive integers, got {}'.format(
              list(self.fc_layer_params)
          )
      )


@dataclasses.dataclass
class ExampleResult:
  """What one run wrote and measured."""

  output_dir: str
  export_dir: str
  checkpoint_dirs: List[str]
  learning_curve_png: str
  summary_json: str
  curve: List[Tuple[int, float]]
  eval_seeds: List[int]
  in_memory_returns: List[float]
  fresh_process: Dict[str, Any]
  seconds: float

  @property
  def in_memory_average_return(self) -> float:
    return float(np.mean(self.in_memory_returns))

  @property
  def fresh_process_average_return(self) -> float:
    return float(self.fresh_process['average_return'])

  @property
  def returns_match(self) -> bool:
    return list(self.fresh_process['returns']) == list(self.in_memory_returns)


def default_output_dir() -> str:
  """The default `--output_dir`, as an absolute path.

  `bazel run` starts binaries in their runfiles directory and sets
  `BUILD_WORKSPACE_DIRECTORY`; results then go under the workspace.

  Returns:
    `<workspace or current directory>/outputs/dqn_cartpole_export`.
  """
  base = os.environ.get('BUILD_WORKSPACE_DIRECTORY') or os.getcwd()
  return os.path.abspath(os.path.join(base, 'outputs', 'dqn_cartpole_export'))


def resolve_output_dir(path: Optional[str]) -> str:
  """The absolute output directory for a `--output_dir` value.

  Args:
    path: The flag's value, or None for `default_output_dir()`. A relative
      path is taken relative to where the user ran the example
      (`$BUILD_WORKING_DIRECTORY` under `bazel run`, else the current
      directory); URLs such as `gs://...` are kept.

  Returns:
    The directory to write to.
  """
  if not path:
    return default_output_dir()
  if '://' in path:
    return path
  base = os.environ.get('BUILD_WORKING_DIRECTORY') or os.getcwd()
  return os.path.abspath(os.path.join(base, path))


def _say(message: str) -> None:
  print(message, flush=True)


def _max_return(library: str, env_id: str) -> Optional[float]:
  """CartPole's best return (reward 1 per step up to its time limit)."""
  if not env_id.startswith('CartPole-'):
    return None
  module = gymnasium if library == evaluate_export.GYMNASIUM else gym
  limit = module.spec(env_id).max_episode_steps
  return float(limit) if limit else None


class _Trainer:
  """The DQN agent, its environment, replay buffer and compiled steps."""

  def __init__(self, config: ExampleConfig):
    tf.random.set_seed(config.seed)
    np.random.seed(config.seed)
    library, env_id = evaluate_export.resolve_env(config.env_name)
    if library == evaluate_export.GYMNASIUM:
      py_env = suite_gymnasium.load(env_id)
    else:
      py_env = suite_gym.load(env_id)
    self.max_return = _max_return(library, env_id)
    py_env.seed(config.seed)
    self.env_name = config.env_name
    self.env = tf_py_environment.TFPyEnvironment(py_env)
    q_net = q_network.QNetwork(
        self.env.observation_spec(),
        self.env.action_spec(),
        fc_layer_params=tuple(config.fc_layer_params),
    )
    self.agent = dqn_agent.DqnAgent(
        self.env.time_step_spec(),
        self.env.action_spec(),
        q_network=q_net,
        optimizer=tf.keras.optimizers.Adam(learning_rate=config.learning_rate),
        epsilon_greedy=config.epsilon_greedy,
        target_update_period=config.target_update_period,
        td_errors_loss_fn=common.element_wise_squared_loss,
        gamma=0.99,
        train_step_counter=tf.Variable(0, dtype=tf.int64, name='train_step'),
    )
    self.agent.initialize()
    self.replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        self.agent.collect_data_spec,
        batch_size=self.env.batch_size,
        max_length=config.replay_buffer_capacity,
    )
    self.environment_steps = tf.Variable(
        0, dtype=tf.int64, name='environment_steps'
    )
    observers = [self.replay_buffer.add_batch, self._count_steps]
    random_policy = random_tf_policy.RandomTFPolicy(
        self.env.time_step_spec(), self.env.action_spec()
    )
    common.function(
        dynamic_step_driver.DynamicStepDriver(
            self.env,
            random_policy,
            observers=observers,
            num_steps=config.initial_collect_steps,
        ).run
    )()
    self._collect = common.function(
        dynamic_step_driver.DynamicStepDriver(
            self.env,
            self.agent.collect_policy,
            observers=observers,
            num_steps=1,
        ).run
    )
    dataset = self.replay_buffer.as_dataset(
        sample_batch_size=config.batch_size, num_steps=2
    ).prefetch(3)
    self._experience = iter(dataset)
    self._train = common.function(self.agent.train)
    self.greedy_action = common.function(self.agent.policy.action)
    self._time_step = None

  def _count_steps(self, trajectory) -> None:
    del trajectory
    self.environment_steps.assign_add(1)

  def train_iteration(self) -> float:
    """Collects one step with the collect policy and trains on one batch."""
    self._time_step, _ = self._collect(time_step=self._time_step)
    experience, _ = next(self._experience)
    return float(self._train(experience).loss)

  def evaluate(self, seeds: Sequence[int]) -> List[float]:
    """The greedy policy's returns, one episode per seed."""
    policy = self.agent.policy
    return evaluate_export.run_episodes(
        self.greedy_action,
        policy.get_initial_state,
        policy.time_step_spec,
        self.env_name,
        seeds,
    )


def run_in_fresh_process(
    export_dir: str,
    checkpoint_dir: Optional[str],
    seeds: Sequence[int],
    env_name: str = ENV_NAME,
) -> Dict[str, Any]:
  """Runs `evaluate_export.py` in a new interpreter that never imports us.

  The process runs `sys.executable` in an empty temporary directory with
  `PYTHONPATH` removed from its environment, so it cannot import this
  repository; the script itself imports only TensorFlow, NumPy and
  Gymnasium (gym for a gym-only id) and fails if `tf_agents` ends up
  imported.

  Args:
    export_dir: A directory written by `PolicySaver.save`.
    checkpoint_dir: Optional `PolicySaver.save_checkpoint` directory to
      restore into the loaded export.
    seeds: One episode per seed.
    env_name: The environment id (see `evaluate_export.resolve_env`).

  Returns:
    The JSON document the script printed, as a dict.

  Raises:
    RuntimeError: If the process fails or prints no JSON document.
  """
  script = os.path.abspath(evaluate_export.__file__)
  if script.endswith('.pyc'):
    script = script[:-1]
  command = [
      sys.executable,
      script,
      '--export_dir=' + export_dir,
      '--env=' + env_name,
      '--seeds=' + ','.join(str(s) for s in seeds),
  ]
  if checkpoint_dir:
    command.append('--checkpoint=' + checkpoint_dir)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  with tempfile.TemporaryDirectory() as cwd:
    process = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
  if process.returncode != 0:
    tail = process.stderr.strip().splitlines()[-1:] or ['(no output)']
    raise RuntimeError(
        'The fresh process failed with exit code {}: {}'.format(
            process.returncode, tail[0]
        )
    )
  lines = process.stdout.strip().splitlines()
  if not lines:
    raise RuntimeError('The fresh process printed nothing.')
  return json.loads(lines[-1])


def write_learning_curve(
    path: str,
    curve: Sequence[Tuple[int, float]],
    export_steps: Sequence[int],
    episodes: int,
    env_name: str = ENV_NAME,
    max_return: Optional[float] = None,
) -> None:
  """Writes a PNG of average return against training step.

  Args:
    path: Output file (any `tf.io.gfile` path).
    curve: `(training step, average return)` points.
    export_steps: Steps at which the policy was exported (dotted lines).
    episodes: Episodes behind each point, for the axis label.
    env_name: The environment, for the title.
    max_return: The best possible return (a dashed line), if known.
  """
  figure = Figure(figsize=(7.0, 4.5), dpi=100)
  axes = figure.add_subplot(1, 1, 1)
  for i, step in enumerate(export_steps):
    axes.axvline(step, color='0.7', linestyle=':', linewidth=1.0,
                 label='export' if i == 0 else None)
  if max_return is not None:
    axes.axhline(max_return, color='tab:green', linestyle='--',
                 linewidth=1.0,
                 label='maximum return ({:g})'.format(max_return))
  steps = [s for s, _ in curve]
  returns = [r for _, r in curve]
  axes.plot(steps, returns, marker='o', color='tab:blue',
            label='greedy policy')
  axes.set_xlabel('training step')
  axes.set_ylabel('average return ({} episodes)'.format(episodes))
  axes.set_title('DQN on {}'.format(env_name))
  axes.set_ylim(0, max([(max_return or 0.0) * 1.05, 10.0] +
                       [r * 1.05 for r in returns]))
  axes.grid(alpha=0.3)
  axes.legend(loc='best')
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png')
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(buffer.getvalue())


def _export(
    saver: policy_saver.PolicySaver, policy_dir: str, step: int
) -> str:
  """Writes the SavedModel (latest) and a checkpoint for `step`."""
  saver.save(os.path.join(policy_dir, 'saved_model'))
  checkpoint_dir = os.path.join(
      policy_dir, 'checkpoints', '{}{:010d}'.format(_CHECKPOINT_PREFIX, step)
  )
  saver.save_checkpoint(checkpoint_dir)
  return checkpoint_dir


def _directory_bytes(path: str) -> int:
  total = 0
  for root, _, files in tf.io.gfile.walk(path):
    for name in files:
      total += tf.io.gfile.stat(os.path.join(root, name)).length
  return total


def train_and_export(config: ExampleConfig) -> ExampleResult:
  """Trains, exports, evaluates in a fresh process, and writes the results.

  Args:
    config: The run's settings.

  Returns:
    What was written and measured.

  Raises:
    ValueError: If a setting is invalid.
    RuntimeError: If the fresh process fails.
  """
  config.validate()
  start = time.time()
  output_dir = config.output_dir
  policy_dir = os.path.join(output_dir, 'policy')
  if tf.io.gfile.exists(policy_dir):
    _say('Removing the previous run\'s exports in {}'.format(policy_dir))
    tf.io.gfile.rmtree(policy_dir)
  tf.io.gfile.makedirs(output_dir)

  trainer = _Trainer(config)
  agent = trainer.agent
  average_return = tf.Variable(0.0, dtype=tf.float32, name='average_return')
  saver = policy_saver.PolicySaver(
      agent.policy,
      train_step=agent.train_step_counter,
      metadata={
          'environment_steps': trainer.environment_steps,
          'average_return': average_return,
      },
      # The greedy policy's `distribution` would make loading need
      # tensorflow_probability; the fresh process imports TensorFlow only.
      include_distribution=False,
  )
  eval_seeds = [
      config.seed + _EVAL_SEED_OFFSET + i for i in range(config.eval_episodes)
  ]

  curve = []
  export_steps = []
  checkpoint_dirs = []
  last_returns = []
  last_loss = float('nan')
  _say('Training DQN on {} for {} iterations (greedy evaluation: {} '
       'episodes every {} iterations).'.format(
           config.env_name, config.num_iterations, config.eval_episodes,
           config.eval_interval))
  for step in range(config.num_iterations + 1):
    if step:
      last_loss = trainer.train_iteration()
    final = step == config.num_iterations
    if step % config.eval_interval == 0 or final:
      last_returns = trainer.evaluate(eval_seeds)
      curve.append((step, float(np.mean(last_returns))))
      average_return.assign(curve[-1][1])
      _say('  step {:>6}/{}  average return {:6.1f}  loss {:>8}  '
           '({:.0f} s)'.format(step, config.num_iterations, curve[-1][1],
                               '{:.4f}'.format(last_loss) if step else '-',
                               time.time() - start))
    if step % config.export_interval == 0 or final:
      checkpoint_dirs.append(_export(saver, policy_dir, step))
      export_steps.append(step)
      _say('  step {:>6}  exported the policy (SavedModel + {})'.format(
          step, os.path.basename(checkpoint_dirs[-1])))

  export_dir = os.path.join(policy_dir, 'saved_model')
  _say('Loading the export in a fresh process (plain tf.saved_model.load, '
       'no tf_agents)...')
  fresh = run_in_fresh_process(export_dir, checkpoint_dirs[-1], eval_seeds,
                               config.env_name)

  png_path = os.path.join(output_dir, 'learning_curve.png')
  write_learning_curve(png_path, curve, export_steps, config.eval_episodes,
                       config.env_name, trainer.max_return)
  summary_path = os.path.join(output_dir, 'summary.json')
  result = ExampleResult(
      output_dir=output_dir,
      export_dir=export_dir,
      checkpoint_dirs=checkpoint_dirs,
      learning_curve_png=png_path,
      summary_json=summary_path,
      curve=curve,
      eval_seeds=eval_seeds,
      in_memory_returns=last_returns,
      fresh_process=fresh,
      seconds=time.time() - start,
  )
  summary = {
      'env': config.env_name,
      'config': dataclasses.asdict(config),
      'export_dir': export_dir,
      'export_bytes': _directory_bytes(export_dir),
      'checkpoint_dirs': checkpoint_dirs,
      'learning_curve_png': png_path,
      'learning_curve': [{'step': s, 'average_return': r} for s, r in curve],
      'eval_seeds': eval_seeds,
      'in_memory_returns': last_returns,
      'in_memory_average_return': result.in_memory_average_return,
      'fresh_process': fresh,
      'returns_match': result.returns_match,
      'seconds': result.seconds,
  }
  with tf.io.gfile.GFile(summary_path, 'w') as f:
    f.write(json.dumps(summary, indent=2) + '\n')
  return result


def print_report(result: ExampleResult) -> None:
  """Prints what the run wrote and the two average returns."""
  fresh = result.fresh_process
  restored = fresh.get('restored_checkpoint', {})
  seeds = result.eval_seeds
  _say('')
  _say('Wrote:')
  _say('  export (SavedModel, latest):  {}  (train step {})'.format(
      result.export_dir, fresh['train_step']))
  _say('  checkpoints ({}):              {}'.format(
      len(result.checkpoint_dirs),
      os.path.dirname(result.checkpoint_dirs[-1])))
  _say('  learning curve (PNG):         {}'.format(result.learning_curve_png))
  _say('  summary (JSON):               {}'.format(result.summary_json))
  _say('Average return over {} greedy episodes (seeds {}..{}):'.format(
      len(seeds), seeds[0], seeds[-1]))
  _say('  in-memory policy:             {:.1f}'.format(
      result.in_memory_average_return))
  _say('  export in a fresh process:    {:.1f}  (TensorFlow {}, tf_agents '
       'imported: {})'.format(result.fresh_process_average_return,
                              fresh['tensorflow_version'],
                              'yes' if fresh['tf_agents_imported'] else 'no'))
  if restored:
    _say('  latest checkpoint restored into the export: train step {}, '
         'largest variable change {:g}'.format(restored['train_step'],
                                               restored['max_abs_change']))
  _say('Returns match: {}.  Done in {:.0f} s.'.format(
      'yes' if result.returns_match else 'NO', result.seconds))


def config_from_flags() -> ExampleConfig:
  """Builds the run's settings from the command-line flags.

  Returns:
    The settings; `output_dir` is resolved with `resolve_output_dir`.

  Raises:
    ValueError: If `--fc_layer_params` holds something other than integers.
  """
  try:
    layers = tuple(int(x) for x in _FC_LAYER_PARAMS.value)
  except ValueError as e:
    raise ValueError('--fc_layer_params must be integers: {}'.format(e))
  return ExampleConfig(
      output_dir=resolve_output_dir(_OUTPUT_DIR.value),
      env_name=_ENV.value,
      num_iterations=_NUM_ITERATIONS.value,
      eval_interval=_EVAL_INTERVAL.value,
      eval_episodes=_EVAL_EPISODES.value,
      export_interval=_EXPORT_INTERVAL.value,
      seed=_SEED.value,
      initial_collect_steps=_INITIAL_COLLECT_STEPS.value,
      learning_rate=_LEARNING_RATE.value,
      fc_layer_params=layers,
      batch_size=_BATCH_SIZE.value,
  )


def main(argv: Sequence[str]) -> int:
  """Runs the example; returns 0 if the two average returns match, else 1."""
  if len(argv) > 1:
    raise app.UsageError(
        'Unexpected arguments: {}'.format(' '.join(argv[1:]))
    )
  # TensorFlow's SavedModel writer and upstream tf-agents log messages and
  # deprecation warnings that do not concern users of this example (pass
  # --verbosity=0 to see them).
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel('ERROR')
  # Autograph's conversion of upstream code raises SyntaxWarnings on Python
  # >= 3.8 ("is" with a literal).
  warnings.filterwarnings('ignore', category=SyntaxWarning)
  try:
    config = config_from_flags()
    config.validate()
  except ValueError as e:
    raise app.UsageError(str(e))
  _say('Output directory: {}'.format(config.output_dir))
  try:
    result = train_and_export(config)
  except RuntimeError as e:
    logging.error('%s', e)
    print('error: {}'.format(e), file=sys.stderr)
    return 1
  print_report(result)
  return 0 if result.returns_match else 1


if __name__ == '__main__':
  app.run(main)
