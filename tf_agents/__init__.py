# coding=utf-8
"""Overlay of this repository's `tf_agents` modules on the installed tf-agents.

This repository owns a few `tf_agents.*` modules (the policy export path);
every other module comes from the pinned `tf-agents==0.19.0` distribution in
the Python environment. `extend_path` appends the distribution's package
directories after this one, so in-repo modules win and upstream fills in the
rest. Upstream's own `__init__` files do not run.
"""

import os
import pkgutil

# tf-agents needs Keras 2 (the tf_keras package) on TensorFlow >= 2.16; this
# must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__path__ = pkgutil.extend_path(__path__, __name__)
