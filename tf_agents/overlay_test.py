# coding=utf-8
"""Tests the overlay: in-repo tf_agents modules win, upstream fills the rest."""

import importlib
import os
import sys

from absl.testing import parameterized
import tensorflow as tf


def _is_installed(path: str) -> bool:
  """True if `path` lies in the Python environment's site-packages."""
  return "site-packages" in os.path.normpath(path).split(os.sep)


_REPO_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class OverlayTest(tf.test.TestCase, parameterized.TestCase):

  def test_legacy_keras_is_selected(self):
    # Set by tf_agents/__init__.py (and .bazelrc) before TensorFlow's Keras
    # is first used; tf-agents networks need Keras 2 on TF >= 2.16.
    self.assertEqual(os.environ.get("TF_USE_LEGACY_KERAS"), "1")

  def test_package_path_has_repo_first_then_upstream(self):
    import tf_agents  # pylint: disable=g-import-not-at-top
    paths = list(tf_agents.__path__)
    self.assertGreaterEqual(len(paths), 2, paths)
    self.assertEqual(os.path.abspath(paths[0]), _REPO_PACKAGE_DIR)
    self.assertTrue(any(_is_installed(p) for p in paths[1:]), paths)

  def test_owned_module_wins_over_installed_one(self):
    policy_saver = importlib.import_module("tf_agents.policies.policy_saver")
    self.assertFalse(_is_installed(policy_saver.__file__),
                     policy_saver.__file__)
    self.assertEqual(
        os.path.dirname(os.path.dirname(os.path.abspath(policy_saver.__file__))),
        _REPO_PACKAGE_DIR)

  @parameterized.parameters(
      "tf_agents.networks.q_network",
      "tf_agents.policies.tf_policy",
      "tf_agents.specs.tensor_spec",
      "tf_agents.agents.dqn.dqn_agent",
  )
  def test_other_modules_come_from_upstream(self, name):
    module = importlib.import_module(name)
    self.assertTrue(_is_installed(module.__file__), module.__file__)

  def test_upstream_importers_get_the_owned_module(self):
    # Upstream modules that import policy_saver must see ours, not theirs.
    ours = importlib.import_module("tf_agents.policies.policy_saver")
    async_saver = importlib.import_module(
        "tf_agents.policies.async_policy_saver")
    eager_policy = importlib.import_module(
        "tf_agents.policies.py_tf_eager_policy")
    self.assertTrue(_is_installed(async_saver.__file__))
    self.assertIs(async_saver.policy_saver_module, ours)
    self.assertTrue(_is_installed(eager_policy.__file__))
    self.assertIs(eager_policy.policy_saver, ours)
    self.assertIs(sys.modules["tf_agents.policies.policy_saver"], ours)

  def test_upstream_modules_importing_the_owned_module_still_load(self):
    # triggers reads `policy_saver.def_function.Function` at import time.
    triggers = importlib.import_module("tf_agents.train.triggers")
    self.assertTrue(_is_installed(triggers.__file__))
    self.assertTrue(hasattr(triggers, "PolicySavedModelTrigger"))


if __name__ == "__main__":
  tf.test.main()
