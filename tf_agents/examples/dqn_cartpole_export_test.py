# coding=utf-8
"""Tests for tf_agents.examples.dqn_cartpole_export."""

import contextlib
import dataclasses
import io
import json
import os
import struct
from unittest import mock

from absl.testing import flagsaver
from absl.testing import parameterized
from matplotlib import image as mpl_image
import numpy as np
import tensorflow as tf

from tf_agents.examples import dqn_cartpole_export
from tf_agents.examples import evaluate_export

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# matplotlib's 'tab:blue', the colour of the learning curve's line.
_CURVE_RGB = np.array([0x1f, 0x77, 0xb4]) / 255.0


def _png_size(data):
  """(width, height) from a PNG's IHDR chunk."""
  assert data[12:16] == b'IHDR', data[:32]
  return struct.unpack('>II', data[16:24])


def _curve_pixel_columns(png_path):
  """The distinct x positions of pixels drawn in the curve's colour."""
  pixels = mpl_image.imread(png_path)[..., :3]
  close = np.all(np.abs(pixels - _CURVE_RGB) < 0.02, axis=-1)
  return np.unique(np.nonzero(close)[1])


class DqnCartpoleExportTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('gymnasium_by_default', {}, 'CartPole-v1', 'gymnasium'),
      ('gym_id', {'env_name': 'gym:CartPole-v0'}, 'gym:CartPole-v0', 'gym'),
  )
  def test_tiny_run_writes_exports_curve_and_matching_returns(
      self, env_setting, env_name, library):
    output_dir = self.create_tempdir().full_path
    # A leftover from an earlier run must not count as this run's export.
    stale = os.path.join(output_dir, 'policy', 'checkpoints',
                         'policy_checkpoint_9999999999')
    tf.io.gfile.makedirs(stale)
    config = dqn_cartpole_export.ExampleConfig(
        output_dir=output_dir,
        num_iterations=40,
        eval_interval=20,
        eval_episodes=2,
        export_interval=25,
        initial_collect_steps=64,
        fc_layer_params=(8,),
        batch_size=16,
        seed=1,
        **env_setting,
    )
    result = dqn_cartpole_export.train_and_export(config)

    # Exports at steps 0, 25 and the last step; evaluations at 0, 20, 40.
    self.assertEqual([step for step, _ in result.curve], [0, 20, 40])
    self.assertFalse(tf.io.gfile.exists(stale))
    self.assertEqual(
        [os.path.basename(d) for d in result.checkpoint_dirs],
        ['policy_checkpoint_0000000000', 'policy_checkpoint_0000000025',
         'policy_checkpoint_0000000040'])
    for checkpoint_dir in result.checkpoint_dirs:
      self.assertTrue(tf.io.gfile.exists(
          os.path.join(checkpoint_dir, 'variables', 'variables.index')))
    self.assertEqual(result.export_dir,
                     os.path.join(output_dir, 'policy', 'saved_model'))
    self.assertTrue(tf.io.gfile.exists(
        os.path.join(result.export_dir, 'saved_model.pb')))

    # The fresh process loaded the latest export without tf_agents and
    # its greedy returns equal the in-memory policy's on the same seeds.
    fresh = result.fresh_process
    self.assertFalse(fresh['tf_agents_imported'])
    self.assertEqual((env_name, library),
                     (fresh['env'], fresh['env_library']))
    self.assertEqual(fresh['train_step'], 40)
    self.assertEqual(fresh['seeds'], result.eval_seeds)
    self.assertLen(result.eval_seeds, 2)
    self.assertEqual(fresh['returns'], result.in_memory_returns)
    self.assertTrue(result.returns_match)
    self.assertEqual(result.fresh_process_average_return,
                     result.in_memory_average_return)
    self.assertEqual(result.curve[-1][1], result.in_memory_average_return)
    restored = fresh['restored_checkpoint']
    self.assertEqual(restored['train_step'], 40)
    self.assertEqual(restored['max_abs_change'], 0.0)

    with tf.io.gfile.GFile(result.learning_curve_png, 'rb') as f:
      png = f.read()
    self.assertEqual(png[:8], _PNG_SIGNATURE)
    self.assertEqual(_png_size(png), (700, 450))
    # A curve, not an empty chart: a line in the curve's colour spans much of
    # the plot's width (the legend's sample line alone is ~30 px wide).
    columns = _curve_pixel_columns(result.learning_curve_png)
    self.assertGreater(columns.max() - columns.min(), 300)

    with tf.io.gfile.GFile(result.summary_json) as f:
      summary = json.load(f)
    self.assertEqual(summary['export_dir'], result.export_dir)
    self.assertEqual(
        [point['step'] for point in summary['learning_curve']], [0, 20, 40])
    self.assertTrue(summary['returns_match'])
    self.assertGreater(summary['export_bytes'], 0)
    self.assertEqual(summary['env'], env_name)

  def test_main_prints_the_report_and_exits_0_only_if_returns_match(self):
    output_dir = self.create_tempdir().full_path
    results = []
    real_train_and_export = dqn_cartpole_export.train_and_export

    def recording_train_and_export(config):
      results.append(real_train_and_export(config))
      return results[-1]

    def run_main(train_and_export):
      stdout = io.StringIO()
      with flagsaver.flagsaver(
          output_dir=output_dir, num_iterations=20, eval_interval=10,
          eval_episodes=2, export_interval=10, initial_collect_steps=64,
          fc_layer_params=['8'], batch_size=16, seed=3):
        with mock.patch.object(dqn_cartpole_export, 'train_and_export',
                               train_and_export):
          with contextlib.redirect_stdout(stdout):
            exit_code = dqn_cartpole_export.main(['dqn_cartpole_export'])
      return exit_code, stdout.getvalue()

    exit_code, report = run_main(recording_train_and_export)
    self.assertEqual(exit_code, 0, report)
    (result,) = results
    self.assertTrue(result.returns_match)
    export_dir = os.path.join(output_dir, 'policy', 'saved_model')
    for line in (
        'Output directory: {}'.format(output_dir),
        'export (SavedModel, latest):  {}  (train step 20)'.format(
            export_dir),
        'learning curve (PNG):         {}'.format(
            os.path.join(output_dir, 'learning_curve.png')),
        'in-memory policy:             {:.1f}'.format(
            result.in_memory_average_return),
        'export in a fresh process:    {:.1f}'.format(
            result.fresh_process_average_return),
        'tf_agents imported: no',
        'Returns match: yes.',
    ):
      self.assertIn(line, report)

    # Returns that differ (a broken export) make the run exit 1.
    fresh = dict(result.fresh_process)
    fresh['returns'] = [r + 1.0 for r in fresh['returns']]
    fresh['average_return'] = float(np.mean(fresh['returns']))
    mismatched = dataclasses.replace(result, fresh_process=fresh)
    exit_code, report = run_main(lambda config: mismatched)
    self.assertEqual(exit_code, 1, report)
    self.assertIn('Returns match: NO.', report)

  def test_fresh_process_reports_failure_in_one_line(self):
    missing = os.path.join(self.create_tempdir().full_path, 'missing')
    with self.assertRaisesRegex(RuntimeError, 'fresh process failed'):
      dqn_cartpole_export.run_in_fresh_process(missing, None, [0])

  @parameterized.named_parameters(
      ('bazel_run', {'BUILD_WORKSPACE_DIRECTORY': '/ws'},
       '/ws/outputs/dqn_cartpole_export'),
      ('plain_python', {}, None),
  )
  def test_default_output_dir(self, environ, expected):
    with mock.patch.dict(os.environ, environ):
      if not environ:
        os.environ.pop('BUILD_WORKSPACE_DIRECTORY', None)
        expected = os.path.join(os.getcwd(), 'outputs', 'dqn_cartpole_export')
      self.assertEqual(dqn_cartpole_export.default_output_dir(), expected)

  @parameterized.named_parameters(
      ('zero_iterations', {'num_iterations': 0}, '--num_iterations'),
      ('no_layers', {'fc_layer_params': ()}, '--fc_layer_params'),
      ('one_collect_step', {'initial_collect_steps': 1},
       '--initial_collect_steps'),
  )
  def test_invalid_config(self, overrides, message):
    config = dqn_cartpole_export.ExampleConfig(
        output_dir=self.create_tempdir().full_path, **overrides)
    with self.assertRaisesRegex(ValueError, message):
      config.validate()

  def test_config_from_flags(self):
    with flagsaver.flagsaver(num_iterations=123, fc_layer_params=['16', '8'],
                             output_dir='relative/out', seed=5,
                             env='gym:CartPole-v0'):
      with mock.patch.dict(os.environ, {'BUILD_WORKING_DIRECTORY': '/wd'}):
        config = dqn_cartpole_export.config_from_flags()
    self.assertEqual(config.num_iterations, 123)
    self.assertEqual(config.fc_layer_params, (16, 8))
    self.assertEqual(config.seed, 5)
    self.assertEqual(config.output_dir, '/wd/relative/out')
    self.assertEqual(config.env_name, 'gym:CartPole-v0')
    self.assertEqual(dqn_cartpole_export.ExampleConfig('out').env_name,
                     'CartPole-v1')

  @parameterized.named_parameters(
      ('registered_in_gymnasium', 'CartPole-v1', ('gymnasium', 'CartPole-v1')),
      ('old_id_gymnasium_also_has', 'CartPole-v0',
       ('gymnasium', 'CartPole-v0')),
      ('explicit_gym', 'gym:CartPole-v1', ('gym', 'CartPole-v1')),
      ('explicit_gymnasium', 'gymnasium:Acrobot-v1',
       ('gymnasium', 'Acrobot-v1')),
      ('unknown_to_gymnasium', 'GymOnly-v0', ('gym', 'GymOnly-v0')),
  )
  def test_resolve_env(self, env_name, expected):
    self.assertEqual(evaluate_export.resolve_env(env_name), expected)

  @parameterized.named_parameters(
      ('relative_under_bazel_run', 'out', {'BUILD_WORKING_DIRECTORY': '/wd'},
       '/wd/out'),
      ('absolute', '/abs/out', {'BUILD_WORKING_DIRECTORY': '/wd'},
       '/abs/out'),
      ('url', 'gs://bucket/out', {'BUILD_WORKING_DIRECTORY': '/wd'},
       'gs://bucket/out'),
  )
  def test_resolve_output_dir(self, path, environ, expected):
    with mock.patch.dict(os.environ, environ):
      self.assertEqual(dqn_cartpole_export.resolve_output_dir(path), expected)

  def test_resolve_output_dir_without_bazel(self):
    with mock.patch.dict(os.environ):
      os.environ.pop('BUILD_WORKING_DIRECTORY', None)
      self.assertEqual(dqn_cartpole_export.resolve_output_dir('out'),
                       os.path.join(os.getcwd(), 'out'))


if __name__ == '__main__':
  tf.test.main()
