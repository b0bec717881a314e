# coding=utf-8
"""Tests of the fleet example: a short run on a local Ray cluster."""

import json
import os

from absl.testing import absltest
import numpy as np

from tf_agents.examples import dqn_cartpole_fleet
from tf_agents.policies import policy_fleet


class DqnCartpoleFleetTest(absltest.TestCase):

  def test_short_run_reaches_every_actor_and_writes_the_figure(self):
    output_dir = self.create_tempdir().full_path
    summary = dqn_cartpole_fleet.run(
        output_dir=output_dir, num_iterations=60, publish_interval=20,
        num_actors=2, ray_address=None, seed=0, fc_layer_params=[16],
        actor_trajectories=8)
    self.assertEqual([], summary['problems'])
    self.assertEqual([20, 40, 60],
                     [v['train_step'] for v in summary['versions']])
    for version in summary['versions']:
      self.assertIsNotNone(version['to_every_actor_seconds'])
    self.assertLen(summary['actors'], 2)
    last = summary['versions'][-1]['version']
    for actor in summary['actors']:
      self.assertEqual(last, actor['version'])
      self.assertGreater(actor['steps'], 0)
      self.assertGreater(actor['steps_per_second'], 0)
      self.assertEqual([], actor['errors'])
    with open(os.path.join(output_dir, 'fleet.png'), 'rb') as f:
      self.assertEqual(b'\x89PNG', f.read(4))
    with open(os.path.join(output_dir, 'summary.json')) as f:
      self.assertEqual(summary['problems'], json.load(f)['problems'])
    dqn_cartpole_fleet.print_report(summary)

  def test_version_lag(self):
    published = [
        policy_fleet.VersionInfo('v-00000002-h-1-a', 2, 10, 10.0, 10.0, None),
        policy_fleet.VersionInfo('v-00000003-h-1-b', 3, 20, 12.0, 12.0, None),
    ]
    applied = [('v-00000001-h-1-c', 1, 9.0, 'storage'),
               ('v-00000002-h-1-a', 2, 10.5, 'object_store'),
               ('v-00000003-h-1-b', 3, 12.25, 'object_store')]
    points = dqn_cartpole_fleet.version_lag(published, applied, 9.0, 13.0)
    self.assertEqual([(0.0, 0), (1.0, 1), (1.5, 0), (3.0, 1), (3.25, 0),
                      (4.0, 0)],
                     [(t, lag) for t, lag in points])
    np.testing.assert_array_equal([0, 1, 0, 1, 0, 0],
                                  [lag for _, lag in points])


if __name__ == '__main__':
  absltest.main()
