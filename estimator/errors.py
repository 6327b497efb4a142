"""The tool's own errors: small, named, one line each, with the exit code the CLI returns for them.

Every failure a user can cause (a bad file, inputs that do not fit, a cost table with a typo) is raised as one of
these, so the CLI can print `error: <message>` and exit with `exit_code`, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1  # the estimate could not be made (bad model, bad inputs, bad cost table)
EXIT_USAGE = 2  # the command line itself is wrong (click's own convention)
EXIT_UNCOSTED = 3  # --strict and some neuron-like layer could not be costed


class NeuronopsError(Exception):
    """Base class: a one-line message meant for the user."""

    exit_code = EXIT_ERROR

    def __str__(self) -> str:  # keep it one line whatever the caller passed
        return " ".join(super().__str__().split())


class ModelLoadError(NeuronopsError):
    """The model file is missing, unreadable, not ONNX, or its external data is unsafe or broken."""


class NoNeuronLayersError(NeuronopsError):
    """The graph holds nothing that looks like a spiking neuron."""


class InputError(NeuronopsError):
    """Recorded inputs are missing, unreadable, or do not fit the model."""


class CostTableError(NeuronopsError):
    """A cost table file is malformed; the message names the file and the key."""


class ReplayError(NeuronopsError):
    """onnxruntime could not run the model on the inputs."""


class UncostedLayersError(NeuronopsError):
    """Raised under --strict when some neuron-like layer has no kind or no cost."""

    exit_code = EXIT_UNCOSTED


class UsageError(NeuronopsError):
    """The command line asks for something contradictory or unavailable (exit 2, like click's own usage errors)."""

    exit_code = EXIT_USAGE


class ArgumentError(UsageError, ValueError):
    """A Python caller passed an argument no command line could (an unknown convention name): a NeuronopsError like
    every other failure, and a ValueError as Python expects of a bad value."""


class ManifestError(UsageError):
    """A batch manifest or model list is malformed (the message names the file and line)."""


class MissingExtraError(UsageError):
    """An option needs an optional dependency that is not installed (e.g. --scheduler without neuronops[dask])."""


class ClusterError(NeuronopsError):
    """The Dask scheduler cannot be reached, or shards cannot be shipped to its workers."""


class EnergyTableError(NeuronopsError):
    """An energy table file (picojoules per operation class) is malformed; the message names the file and key."""


class ReportFileError(NeuronopsError):
    """A saved JSON report (for `neuronops compare`) is missing, unreadable, or not a neuronops report."""


class FeasibilityError(NeuronopsError, ValueError):
    """Feasibility settings that do not fit: a budget without a step rate, an effective basis without a replay."""

    exit_code = EXIT_USAGE


class ResourceLimitError(NeuronopsError):
    """A limit set for the run (--max-memory, --timeout) would be or was exceeded; nothing half-done is reported."""


class MemoryLimitError(ResourceLimitError):
    """Even one sample's replay would need more memory than --max-memory allows."""


class TimeLimitError(ResourceLimitError):
    """The estimate did not finish within --timeout seconds."""


class OutputError(NeuronopsError):
    """The report could not be written where asked (nothing is left half-written)."""


def unexpanded_pattern_hint(path: Path | str) -> str:
    """For a path that does not exist and holds a wildcard: the shell did not expand it (it was quoted), and
    nothing here does; say so, instead of a bare 'no such file'."""
    if not any(char in str(path) for char in "*?["):
        return ""
    return ("; a wildcard pattern is not expanded here (was it quoted?): name one file, or let "
            "`neuronops batch 'PATTERN'` expand it")


def require_file(path: Path, error: type[NeuronopsError], missing: str, expected: str) -> None:
    """Raise `error` unless `path` is one regular file: `"<path>: <missing>"` when absent, and a message naming
    `expected` for a folder, a FIFO or a device (which would block or never end), or a path the system refuses (a
    name too long, a NUL byte in it)."""
    try:
        if not path.exists():
            raise error(f"{path}: {missing}{unexpanded_pattern_hint(path)}")
        if path.is_dir():
            raise error(f"{path}: is a directory, expected {expected}")
        if not path.is_file():
            raise error(f"{path}: not a regular file, expected {expected}")
    except (OSError, ValueError) as err:
        raise error(f"{path}: cannot read ({getattr(err, 'strerror', None) or err})") from None
