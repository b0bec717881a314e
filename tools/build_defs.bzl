"""Python rules for this repository's targets, as Reverb and TFP write them.

`tfa_py_library`, `tfa_py_test` and `tfa_py_binary` are `py_library`,
`py_test` and `py_binary` with the third-party dependencies nearly every
target imports (`COMMON_DEPS`) added, so a target lists only its first-party
dependencies and the less common third-party ones (gym, onnx, ray, ...).
The stand-ins in //third_party/py carry no files (the selected environment
provides the code), so a common dependency a target does not import costs
nothing.

Targets that must not depend on them keep the native rules: the wheel
writer (standard library only) and programs that run without TensorFlow.
"""

# The third-party stand-ins (see //third_party/py:BUILD) every target gets.
COMMON_DEPS = [
    "//third_party/py:absl",
    "//third_party/py:numpy",
    "//third_party/py:tensorflow",
    "//third_party/py:tf_agents",
]

# Who may depend on an internal module: the overlay's own packages and the
# wheel, which ships every owned module.
INTERNAL_VISIBILITY = [
    "//tf_agents:__subpackages__",
    "//tools/pip_package:__pkg__",
]

def _with_common_deps(deps):
    """`deps` and every `COMMON_DEPS` entry it does not list yet."""
    return deps + [dep for dep in COMMON_DEPS if dep not in deps]

def tfa_py_library(name, deps = [], **kwargs):
    """A `py_library` that also depends on `COMMON_DEPS`.

    Args:
      name: The target's name.
      deps: Its other dependencies.
      **kwargs: Passed to `py_library`.
    """
    native.py_library(name = name, deps = _with_common_deps(deps), **kwargs)

def tfa_py_test(name, deps = [], **kwargs):
    """A `py_test` that also depends on `COMMON_DEPS`.

    Args:
      name: The target's name.
      deps: Its other dependencies.
      **kwargs: Passed to `py_test`.
    """
    native.py_test(name = name, deps = _with_common_deps(deps), **kwargs)

def tfa_py_binary(name, deps = [], **kwargs):
    """A `py_binary` that also depends on `COMMON_DEPS`.

    Args:
      name: The target's name.
      deps: Its other dependencies.
      **kwargs: Passed to `py_binary`.
    """
    native.py_binary(name = name, deps = _with_common_deps(deps), **kwargs)
