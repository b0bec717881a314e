"""Tests that in-repo tf_agents modules win over the installed distribution's."""

import os

from absl.testing import absltest


def _under_site_packages(path):
  return "site-packages" in path.split(os.sep)


class OverlayTest(absltest.TestCase):

  def test_placeholder(self):
    import tf_agents.policies.policy_saver as ps  # pylint: disable=g-import-not-at-top
    import tf_agents.networks.q_network as qn  # pylint: disable=g-import-not-at-top
    print(ps.__file__, qn.__file__, os.environ.get("TF_USE_LEGACY_KERAS"))
    self.assertFalse(_under_site_packages(ps.__file__))
    self.assertTrue(_under_site_packages(qn.__file__))


if __name__ == "__main__":
  absltest.main()
