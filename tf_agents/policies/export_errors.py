# coding=utf-8
"""Exception types for writing and reading policy exports.

New module (upstream tf-agents has none): every failure of the export path
that is the user's data rather than a bug raises a subclass of `ExportError`
with a one-line message naming the file or field at fault, instead of a
TensorFlow stack dump.
"""


class ExportError(Exception):
  """Base class of the errors raised for policy exports."""


class ExportNotFoundError(ExportError):
  """The export path does not exist."""


class NotAnExportError(ExportError):
  """The path exists but is not a (complete) policy export."""


class CorruptExportError(ExportError):
  """A file of the export is truncated, garbled or missing."""


class ManifestMismatchError(CorruptExportError):
  """A file does not match the export's integrity manifest."""


class ExportWriteError(ExportError):
  """Writing an export failed; any previous export is left intact."""


class TimeStepMismatchError(ExportError, ValueError):
  """A time step has the wrong dtype or shape for the export."""
