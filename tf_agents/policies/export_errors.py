# coding=utf-8
"""Exception types for writing and reading policy exports.

New module (upstream tf-agents has none): every failure of the export path
that is the user's data rather than a bug raises a subclass of `ExportError`
with a one-line message naming the file or field at fault, instead of a
TensorFlow stack dump.
"""

from typing import Text


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


class ExportSignatureError(ExportError, ValueError):
  """The export's signatures do not match its specs, so it cannot be run."""


def one_line(error: BaseException, limit: int = 300) -> Text:
  """`Type: first line of the message` (at most `limit` characters of it).

  Args:
    error: The exception to describe, usually one raised by TensorFlow.
    limit: How many characters of its first line to keep.

  Returns:
    A one-line description for a one-line error message.
  """
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  first = lines[0][:limit] if lines else ''
  return '{}: {}'.format(type(error).__name__, first)
