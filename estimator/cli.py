"""The `neuronops` command: a thin click shell over the Python API (estimator.api)."""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import EXIT_ERROR, NeuronopsError, OutputError

EXIT_CODES_HELP = "Exit codes: 0 ok, 1 estimation error (bad model, inputs or cost table; over --max-memory or " \
                  "--timeout; report not writable), 2 usage error, 3 uncosted layers under --strict, " \
                  "130 interrupted. Errors are one line on stderr: 'error: <what is wrong>; <what would work>'."


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Our errors become one line on stderr and their exit code; anything else too (no traceback) unless
    NEURONOPS_DEBUG is set."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except NeuronopsError as err:
            _fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except MemoryError:
            _fail("out of memory: try a smaller --batch-size", EXIT_ERROR)
        except Exception as err:  # a bug or an unforeseen input: still one line, never a traceback
            if os.environ.get("NEURONOPS_DEBUG"):
                raise
            _fail(f"unexpected {type(err).__name__}: {' '.join(str(err).split())[:300]} "
                  "(set NEURONOPS_DEBUG=1 for a traceback and please report it)", EXIT_ERROR)

    return wrapper


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, flushed to disk, then renamed over `path`: a crash or Ctrl-C
    leaves either the old file or the whole new one, never a half-written report."""
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{path}: cannot write the report there ({path.parent} is not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(f"{path}: cannot write the report there ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report gets the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OutputError(f"{path}: cannot write the report there ({err.strerror or err})") from None
        raise


def emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomic(output, text)


def _version() -> str:
    """The installed version; a source checkout run with `python -m estimator` has none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neuronops")
    except PackageNotFoundError:
        return "unknown (not installed)"


class OneLineErrors(click.Group):
    """Command-line mistakes get one line too — `error: <what is wrong> (see '<command> --help')`, exit 2 — instead
    of click's usage block."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            _fail(f"{err.format_message()}{hint}", err.exit_code)
        except click.ClickException as err:
            _fail(err.format_message(), err.exit_code)
        except click.Abort:
            _fail("interrupted", 130)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXIT_CODES_HELP)
@click.version_option(version=_version())
def main() -> None:
    """How much work the neurons of a spiking neural network do, read from its ONNX export.

    Computes NeuroBench's NeuronOperations: Neuron Dense Ops (from shapes alone) and Effective Neuron Ops (from a
    replay of recorded inputs in onnxruntime), per layer and per sample.

    \b
    Examples:
      neuronops estimate model.onnx                          # dense ops only
      neuronops estimate model.onnx --inputs inputs.npz      # + effective ops (spikes convention)
      neuronops estimate model.onnx --inputs inputs.npz --convention neurobench --format json
      neuronops layers model.onnx                            # the neuron layers found, and how
      neuronops explain model.onnx                           # why each layer matched (or did not)
    """


class MemorySize(click.ParamType):
    """A memory size on the command line: 2GB, 1.5GiB, 512MB or bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from .limits import parse_size

        try:
            return parse_size(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--inputs", "-i", "inputs", type=click.Path(path_type=Path),
              help="Recorded inputs: .npz (one array per graph input name, or a single array) or .npy "
                   "(memory-mapped), laid out (batch, time, features…) like NeuroBench.")
@click.option("--convention", "-c", type=click.Choice(["spikes", "neurobench"]), default="spikes", show_default=True,
              help="spikes: spikes emitted × cost (NeuroBench's written definition). neurobench: cost × membranes "
                   "that changed, every neuron counted at the first step (what NeuroBench's code computes).")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file (atomically) instead of stdout.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1),
              help="Samples per onnxruntime run (default: the graph's fixed batch, else 64). Results do not "
                   "depend on it.")
@click.option("--time-axis", type=int, default=1, show_default=True,
              help="Axis of the time steps in the inputs file (NeuroBench: 1).")
@click.option("--steps", type=click.IntRange(min=1),
              help="Time steps per sample for dense ops of a stepwise model when no --inputs are given.")
@click.option("--cost-table", "cost_tables", multiple=True, type=click.Path(path_type=Path),
              help="A TOML cost table laid over the bundled ones (repeatable); see cost_tables/ for the format.")
@click.option("--strict", is_flag=True, help="Exit 3 when any neuron-like layer could not be costed.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="onnxruntime intra-op threads (0: its default).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only when stderr is a terminal).")
@click.option("--allow-nonfinite", is_flag=True,
              help="Replay inputs holding NaN or ±Inf as they are (with a warning) instead of refusing them.")
@click.option("--max-memory", type=MemorySize(), default=None,
              help="Memory the replay may use, e.g. 2GB, 512MiB (default: half the RAM). The batch is shrunk to "
                   "fit, or the replay refused, from an estimate made before it runs.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Give up (exit 1) when the estimate takes longer; a running onnxruntime call is stopped.")
@handle_errors
def estimate(model: Path, inputs: Path | None, convention: str, fmt: str, output: Path | None,
             batch_size: int | None, time_axis: int, steps: int | None, cost_tables: tuple[Path, ...],
             strict: bool, threads: int, progress: bool | None, allow_nonfinite: bool, max_memory: int | None,
             timeout: float | None) -> None:
    """Estimate Neuron Dense Ops and Effective Neuron Ops for MODEL (.onnx).

    Dense ops need only the graph. Effective ops need --inputs; the model is replayed in onnxruntime and spikes
    and membrane changes are counted exactly (integers), then divided once by the number of samples.
    """
    from .api import estimate as run_estimate
    from .formats import REPORT_FORMATS

    show = sys.stderr.isatty() if progress is None else progress
    bar = None

    def on_progress(done: int, total: int) -> None:
        nonlocal bar
        if not show:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="replaying samples", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        report = run_estimate(model, inputs, convention=convention, batch_size=batch_size, time_axis=time_axis,
                              steps=steps, cost_tables=cost_tables, strict=strict, threads=threads,
                              progress=on_progress, allow_nonfinite=allow_nonfinite, max_memory=max_memory,
                              timeout=timeout)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    emit(REPORT_FORMATS[fmt](report), output)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@handle_errors
def layers(model: Path, fmt: str) -> None:
    """List the neuron layers found in MODEL: kind, reset, size, steps, and how each was recognised."""
    from .api import analyse
    from .formats import format_layers, layers_json

    analysis = analyse(model)
    click.echo((layers_json if fmt == "json" else format_layers)(str(model), analysis.match), nl=False)


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(path_type=Path))
@handle_errors
def explain(model: Path) -> None:
    """Show, per candidate layer, the update read from the graph, the kind it matched or why each kind refused."""
    from .api import analyse
    from .formats import format_explain

    analysis = analyse(model)
    click.echo(format_explain(str(model), analysis.match), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
