"""One error hierarchy for dlc.

Every error a user can cause is a `DlcError`; the CLI turns it into a one-line message
and exit code 1. Leaves also inherit the matching stdlib class so library callers can
catch what they already know (`except FileNotFoundError`). A message says what failed,
the offending value, and how to fix it.
"""


class DlcError(Exception):
    """Base class of every error dlc reports to a user."""


class InputFileError(DlcError, FileNotFoundError):
    """A file or directory the user named does not exist or cannot be read."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise print "[Errno ...]"
        return str(self.args[0]) if self.args else ""


class OutputExistsError(DlcError, FileExistsError):
    """The output path exists and overwriting was not asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidModelError(DlcError, ValueError):
    """A file is not a valid ONNX model or dlc checkpoint."""


class InvalidDataError(DlcError, ValueError):
    """A data file, folder or data set cannot be used for training."""


class UnknownNameError(DlcError, LookupError):
    """A model, target, backend or other registered name does not exist."""


class InputMismatchError(DlcError, ValueError):
    """Inputs given to a model do not match its input names, shapes or dtypes."""


class UnsupportedOpError(DlcError, NotImplementedError):
    """A backend cannot handle one or more ops of the model."""


class NumericMismatchError(DlcError, ArithmeticError):
    """Two backends disagree beyond the tolerance."""


class ArtifactIntegrityError(DlcError, ValueError):
    """An artifact's files do not match the hashes in its manifest."""


class WrongArchitectureError(DlcError, ValueError):
    """An artifact was built for another machine architecture than the one asked to run it."""


class DeviceError(DlcError, ConnectionError):
    """A remote device could not be reached, or dropped during a run."""


class BackendUnavailableError(DlcError, RuntimeError):
    """A backend was asked for but cannot run (missing checkpoint, missing package)."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if it has none), at most `limit` characters.

    Libraries raise multi-line messages (tracebacks of C++ code, long explanations); a
    dlc error quotes only their first line.
    """
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]
