"""The `neuronops` command: a thin click shell over the Python API (estimator.api)."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from .errors import EXIT_ERROR, NeuronopsError, OutputError

REPORT_FORMAT_NAMES = ["table", "json", "csv", "markdown", "html"]  # = formats.REPORT_FORMATS (imported lazily)
ONE_LINE_ERRORS = "Errors are one line on stderr: 'error: <what is wrong>; <what would work>'."
EXIT_CODES_HELP = "Exit codes: 0 ok, 1 estimation error (bad model, inputs or cost table; over --max-memory or " \
                  "--timeout; report not writable), 2 usage error, 3 uncosted layers under --strict, " \
                  f"130 interrupted. {ONE_LINE_ERRORS}"
# each command lists the exit codes it can give
MODEL_EXIT_CODES = "Exit codes: 0 ok, 1 the model cannot be read or analysed (or the output not written), 2 usage " \
                   f"error, 130 interrupted. {ONE_LINE_ERRORS}"
COMPARE_EXIT_CODES = "Exit codes: 0 ok, 1 a report or energy table cannot be read (or the output not written), " \
                     f"2 usage error, 130 interrupted. {ONE_LINE_ERRORS}"
CACHE_EXIT_CODES = f"Exit codes: 0 ok, 1 the cache folder cannot be read or cleared, 2 usage error. {ONE_LINE_ERRORS}"
BATCH_EXIT_CODES = "Exit codes: 0 every model ok, 1 any model failed, 2 usage error or bad manifest, 3 the only " \
                   f"failures are uncosted layers under --strict, 130 interrupted. {ONE_LINE_ERRORS}"


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose pipe closed


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (a test runner's): nothing left to flush there
        pass


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
        except BrokenPipeError:  # stdout's reader quit early (`| head -1`): no message, a shell's SIGPIPE code
            _quiet_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
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
    leaves either the old file or the whole new one, never a half-written report. A symlink is followed (the file
    it points to is replaced, the link kept); a device or a pipe (/dev/null, a FIFO) is written to, never replaced."""
    if path.exists() and not path.is_file() and not path.is_dir():
        try:
            with open(path, "w", encoding="utf-8", errors="backslashreplace") as handle:
                handle.write(text)
        except OSError as err:
            raise OutputError(f"{path}: cannot write the report there ({err.strerror or err})") from None
        return
    if path.is_symlink():
        path = path.resolve()
    if path.parent.exists() and not path.parent.is_dir():
        raise OutputError(f"{path}: cannot write the report there ({path.parent} is not a folder)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # imported here: only writes need it (start-up time)

        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputError(f"{path}: cannot write the report there ({err.strerror or err})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
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


SUFFIX_FORMATS = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".html": "html",
                  ".htm": "html", ".txt": "table"}
FORMAT_HELP = "Default: the format -o's suffix names (.json, .csv, .md, .html, .txt), else table."


def output_format(fmt: str | None, output: Path | None, offered: list[str],
                  reads: Iterable[Path | None] = ()) -> str:
    """The format to write: --format if given, else the one -o's suffix names (a report.json holds JSON), else
    table. A --format that contradicts the suffix is obeyed, with a warning. An -o naming a file the command reads
    (`reads`: its model, inputs, tables, reports) is refused before any work: the report would replace it."""
    from .errors import UsageError

    for source in reads:
        try:
            same = output is not None and source is not None and os.path.samefile(output, source)
        except OSError:  # either is missing: nothing to overwrite
            same = False
        if same:
            raise UsageError(f"-o {output} is {source}, which this command reads (the report would replace it); "
                             "write the report to another file")
    named = SUFFIX_FORMATS.get(output.suffix.lower()) if output is not None else None
    named = named if named in offered else None
    if fmt is None:
        return named or "table"
    if named is not None and named != fmt:
        click.echo(f"warning: writing {fmt} to {output} (--format {fmt}; its suffix names {named})", err=True)
    return fmt


def emit(text: str, output: Path | None) -> None:
    if output is None:
        if sys.stdout is None:  # started with stdout closed (`>&-`): the report would vanish, exit 0
            raise OutputError("standard output is closed; write the report to a file with -o FILE")
        try:
            click.echo(text, nl=False)
        except BrokenPipeError:
            raise
        except OSError as err:  # a full disk, /dev/full
            raise OutputError(f"cannot write the report to standard output ({err.strerror or err}); write it to "
                              "a file with -o FILE") from None
    else:
        write_atomic(output, text)


def _stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()  # None: started with stderr closed (`2>&-`)


def _version() -> str:
    """The installed version; a source checkout run with `python -m estimator` has none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neuronops")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _show_version(ctx: click.Context) -> None:
    # looked up only when asked: importlib.metadata scans the installed distributions (slow for every --help)
    click.echo(f"{ctx.find_root().info_name}, version {_version()}")
    ctx.exit()


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
        except BrokenPipeError:  # --help or --version into `| head -1`
            _quiet_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        except OSError as err:  # --help or --version into a full disk (/dev/full); our commands' own are caught
            _fail(f"cannot write to standard output ({err.strerror or err})", EXIT_ERROR)


cache_option = click.option(
    "--cache/--no-cache", default=True, show_default=True,
    help="Read a model's analysis from the analysis cache when this file was analysed before, and store it "
         "otherwise (a second run skips loading and matching). Same figures either way; see 'neuronops cache "
         "--help'.")


def dask_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The Dask cluster options, shared by `estimate` (one model's replay) and `batch` (many models)."""
    for option in reversed((
        click.option("--scheduler", metavar="ADDRESS",
                     help="Send the jobs to a Dask cluster (tcp://host:8786), or 'local' to start one here. Needs "
                          "neuronops[dask]. Default: $DASK_SCHEDULER_ADDRESS when --jobs is not given."),
        click.option("--scheduler-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="A Dask scheduler file (dask scheduler --scheduler-file PATH)."),
        click.option("--ship", type=click.Choice(["paths", "bytes"]), default="paths", show_default=True,
                     help="How jobs reach Dask workers: file paths (the workers see the same files) or bytes (model "
                          "and the job's slice of inputs, sent over the network; capped by --max-shard-mb)."),
        click.option("--max-shard-mb", type=click.IntRange(min=1), default=256, show_default=True,
                     help="With --ship bytes: the most one job may carry."),
    )):
        command = option(command)
    return command


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
             epilog=EXIT_CODES_HELP)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, help="Show the version and exit.",
              callback=lambda ctx, _param, value: _show_version(ctx) if value else None)
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
      neuronops estimate model.onnx -i inputs.npz --step-rate 1000 --budget 1e6 --format html -o report.html
      neuronops compare a.json b.json --step-rate 1000 --budget 1e6   # which variant fits
      neuronops batch 'runs/*/model.onnx' --out results --jobs 2   # many models: results/, summary.csv
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


class PositiveRate(click.ParamType):
    """A positive rate: 1000, 1e5, or with an SI prefix — 100k, 1.5M, 2G — and, if written, its unit (1kHz,
    2Mops/s)."""

    name = "NUMBER"
    _PREFIXES = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}

    def __init__(self, unit: str) -> None:
        self.unit = unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import re

        if isinstance(value, (int, float)):
            number = float(value)
        else:
            text = str(value).strip()
            if text.lower().endswith(self.unit.lower()):
                text = text[:-len(self.unit)].strip()
            found = re.fullmatch(r"([0-9.eE+-]+)\s*([kKMGT]?)", text)
            try:
                number = float(found.group(1)) * self._PREFIXES[found.group(2)] if found else float("nan")
            except ValueError:
                number = float("nan")
        if not number > 0 or number == float("inf"):  # also NaN
            self.fail(f"{value!r} is not a positive number (e.g. 1000, 1e5, 100k, 1.5M{', 1k' + self.unit})",
                      param, ctx)
        from .feasibility import HIGHEST_RATE, LOWEST_RATE

        # rates multiply and divide ops per sample: keep every derived figure a finite, non-zero float
        if not LOWEST_RATE <= number <= HIGHEST_RATE:
            self.fail(f"{value!r} is {'more' if number > 1 else 'less'} than "
                      f"{HIGHEST_RATE if number > 1 else LOWEST_RATE:g} {self.unit}", param, ctx)
        return number


class Seconds(click.ParamType):
    """A positive, finite number of seconds (up to a year: a longer deadline is none)."""

    name = "SECONDS"
    MAX = 366 * 24 * 3600.0

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not 0 < number <= self.MAX:  # also NaN and infinity
            self.fail(f"{value!r} is not a number of seconds above 0 and up to {self.MAX:,.0f} (a year)", param, ctx)
        return number


MAX_THREADS = 256  # onnxruntime starts them all: 20 000 took minutes and gigabytes before the first run
CONVENTION_CHOICE = click.Choice(["spikes", "neurobench"], case_sensitive=False)


class _OneModelCommand(click.Command):
    """A command over one MODEL. Arguments after it are collected (not refused by click, whose message lists them
    all: a shell glob can expand to hundreds of paths) and refused here in one short line that says what would work:
    for `estimate`'s most likely slip, the inputs file given as a second argument, where inputs go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["context_settings"] = {**kwargs.get("context_settings", {}), "allow_extra_args": True}
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if ctx.args:
            extra = ctx.args
            shown = " ".join(extra[:3]) + (f" … and {len(extra) - 3} more" if len(extra) > 3 else "")
            message = f"Got unexpected extra argument{'s' if len(extra) > 1 else ''} ({shown}); "
            if self.name == "estimate" and len(extra) == 1:
                message += "recorded inputs go with -i/--inputs FILE"
            else:
                message += f"{self.name} takes one MODEL (for many models: neuronops batch, or a shell loop)"
            raise click.UsageError(message, ctx)
        return rest


@main.command(cls=_OneModelCommand, epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--inputs", "-i", "inputs", type=click.Path(path_type=Path),
              help="Recorded inputs: .npz (one array per graph input name, or a single array) or .npy "
                   "(memory-mapped), laid out (batch, time, features…) like NeuroBench.")
@click.option("--convention", "-c", type=CONVENTION_CHOICE, default="spikes", show_default=True,
              help="spikes: spikes emitted × cost (NeuroBench's written definition). neurobench: cost × membranes "
                   "that changed, every neuron counted at the first step (what NeuroBench's code computes).")
@click.option("--format", "-f", "fmt", type=click.Choice(REPORT_FORMAT_NAMES),
              help="html: one self-contained file (inline SVG charts, no network); csv: one row per layer + totals. "
                   + FORMAT_HELP)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file (atomically) instead of stdout; missing folders are created.")
@click.option("--step-rate", type=PositiveRate("Hz"), metavar="HZ",
              help="Time steps per second of real time: adds the sustained neuron ops/s needed (one sample stream "
                   "in real time: ops/s = ops per sample / T × HZ).")
@click.option("--budget", type=PositiveRate("ops/s"), metavar="OPS_PER_S",
              help="Neuron ops/s the hardware sustains (needs --step-rate): headroom and a feasible / not feasible "
                   "verdict.")
@click.option("--budget-basis", type=click.Choice(["dense", "effective"]), default="dense", show_default=True,
              help="Which ops/s the verdict compares with --budget: dense (every neuron every step: any input) or "
                   "effective (the replayed inputs' activity; needs --inputs).")
@click.option("--energy-table", type=click.Path(path_type=Path), metavar="FILE",
              help="TOML of picojoules per operation class, with its source, or a bundled table's name "
                   "(energy-45nm): adds energy per sample and, with --step-rate, power.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1),
              help="Samples per onnxruntime run (default: the graph's fixed batch, else 64). Results do not "
                   "depend on it.")
@click.option("--time-axis", type=int, default=1, show_default=True,
              help="Axis of the time steps in the inputs file (NeuroBench: 1). The model's own layout (time "
                   "first, or one static input read at every step) is read from its graph.")
@click.option("--steps", type=click.IntRange(min=1),
              help="Time steps per sample for dense ops of a stepwise model when no --inputs are given.")
@click.option("--cost-table", "cost_tables", multiple=True, type=click.Path(path_type=Path),
              help="A TOML cost table laid over the bundled ones (repeatable); the format is in the README's "
                   "Cost tables section.")
@click.option("--strict", is_flag=True, help="Exit 3 when any neuron-like layer could not be costed.")
@click.option("--threads", type=click.IntRange(min=0, max=MAX_THREADS), default=0, show_default=True,
              help="onnxruntime intra-op threads (0: its default; idle threads then spin between runs while a "
                   "core is free). Set it when sharing the machine: a set count never spins.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only when stderr is a terminal).")
@click.option("--allow-nonfinite", is_flag=True,
              help="Replay inputs holding NaN or ±Inf as they are (with a warning) instead of refusing them.")
@click.option("--max-memory", type=MemorySize(), default=None,
              help="Memory the replay may use, e.g. 2GB, 512MiB (default: half the RAM; with --jobs/--scheduler: "
                   "per job, no default). The batch is shrunk to fit, or the replay refused, from an estimate made "
                   "before it runs.")
@click.option("--timeout", type=Seconds(), default=None, metavar="SECONDS",
              help="Give up (exit 1) when the estimate takes longer; a running onnxruntime call is stopped.")
@click.option("--jobs", "-j", type=click.IntRange(min=1),
              help="Split the replay's samples across N local worker processes (one onnxruntime thread each); "
                   "with --scheduler local, the number of Dask workers. Same figures as one process.")
@click.option("--shard-size", type=click.IntRange(min=1),
              help="With --jobs or --scheduler: samples per job (default: about 4 jobs per worker).")
@cache_option
@dask_options
@handle_errors
def estimate(model: Path, inputs: Path | None, convention: str, fmt: str | None, output: Path | None,
             step_rate: float | None, budget: float | None, budget_basis: str, energy_table: Path | None,
             batch_size: int | None, time_axis: int, steps: int | None, cost_tables: tuple[Path, ...],
             strict: bool, threads: int, progress: bool | None, allow_nonfinite: bool, max_memory: int | None,
             timeout: float | None, jobs: int | None, shard_size: int | None, cache: bool, scheduler: str | None,
             scheduler_file: Path | None, ship: str, max_shard_mb: int) -> None:
    """Estimate Neuron Dense Ops and Effective Neuron Ops for MODEL (.onnx).

    Dense ops need only the graph. Effective ops need --inputs; the model is replayed in onnxruntime and spikes
    and membrane changes are counted exactly (integers), then divided once by the number of samples. With --jobs
    or --scheduler the samples are split across workers; the figures are the same.
    """
    from .api import estimate as run_estimate
    from .errors import FeasibilityError, UsageError
    from .formats import REPORT_FORMATS

    fmt = output_format(fmt, output, REPORT_FORMAT_NAMES, (model, inputs, energy_table, *cost_tables))
    if budget is not None and step_rate is None:  # checked before a long replay, not after it
        raise FeasibilityError("--budget needs --step-rate (time steps per second) to turn ops per sample into ops/s")
    if budget is not None and budget_basis == "effective" and inputs is None:
        raise FeasibilityError("--budget-basis effective needs --inputs (effective ops come from a replay)")
    energy = None
    if energy_table is not None:
        from .feasibility import read_energy_table

        energy = read_energy_table(energy_table)  # read first: a typo in it fails before a long replay
    scheduler = _scheduler(jobs, scheduler, scheduler_file)
    split = inputs is not None and ((jobs or 1) > 1 or scheduler is not None or scheduler_file is not None)
    if split:
        alone = [name for name, given in (("--timeout", timeout is not None), ("--threads", threads != 0)) if given]
        if alone:
            raise UsageError(f"{' and '.join(alone)} cannot be combined with --jobs/--scheduler (a split replay); "
                             "drop one or the other")
    show = _stderr_is_terminal() if progress is None else progress
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
        if split:
            assert inputs is not None
            report = _estimate_split(model, inputs, convention, batch_size, time_axis, steps, cost_tables, strict,
                                     allow_nonfinite, max_memory, jobs, shard_size, scheduler, scheduler_file, ship,
                                     max_shard_mb, on_progress, cache)
        else:
            report = run_estimate(model, inputs, convention=convention, batch_size=batch_size, time_axis=time_axis,
                                  steps=steps, cost_tables=cost_tables, strict=strict, threads=threads,
                                  progress=on_progress, allow_nonfinite=allow_nonfinite, max_memory=max_memory,
                                  timeout=timeout, cache=cache)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if step_rate is not None or energy is not None:
        from dataclasses import replace

        from .feasibility import assess

        report = replace(report, feasibility=assess(report, step_rate, budget, budget_basis, energy))
    emit(REPORT_FORMATS[fmt](report), output)


def _scheduler(jobs: int | None, scheduler: str | None, scheduler_file: Path | None) -> str | None:
    """The Dask scheduler to use: --scheduler, else $DASK_SCHEDULER_ADDRESS unless --jobs or --scheduler-file says
    otherwise (explicit options win over the environment)."""
    from .errors import UsageError

    if scheduler is not None and scheduler_file is not None:
        raise UsageError("give --scheduler or --scheduler-file, not both")
    if scheduler is None and scheduler_file is None and jobs is None:
        address = os.environ.get("DASK_SCHEDULER_ADDRESS") or None
        if address is not None and importlib.util.find_spec("distributed") is None:
            # set for other Dask work in this shell, not asked of neuronops: run here rather than fail
            click.echo(f"warning: $DASK_SCHEDULER_ADDRESS is set ({address}) but Dask is not installed: running in "
                       "this process (pip install 'neuronops[dask]' to use the scheduler; --jobs 1 silences this)",
                       err=True)
            return None
        return address
    return scheduler


def _estimate_split(model: Path, inputs: Path, convention: str, batch_size: int | None, time_axis: int,
                    steps: int | None, cost_tables: tuple[Path, ...], strict: bool, allow_nonfinite: bool,
                    max_memory: int | None, jobs: int | None, shard_size: int | None, scheduler: str | None,
                    scheduler_file: Path | None, ship: str, max_shard_mb: int,
                    on_progress: Callable[[int, int], None], cache: bool = True) -> Any:
    """One model's replay cut into shards for worker processes or a Dask cluster (the batch machinery)."""
    from .parallel import estimate_sharded, open_backend, peek_samples

    total = peek_samples(inputs) or 0
    done = 0

    def on_samples(count: int) -> None:
        nonlocal done
        done += count
        if total:
            on_progress(done, total)

    with open_backend(jobs or 1, scheduler, str(scheduler_file) if scheduler_file else None, ship,
                      max_shard_mb * 2**20) as backend:
        return estimate_sharded(model, inputs, backend=backend, convention=convention, batch_size=batch_size,
                                time_axis=time_axis, steps=steps, cost_tables=tuple(map(str, cost_tables)),
                                strict=strict, shard_size=shard_size, allow_nonfinite=allow_nonfinite,
                                on_samples=on_samples, max_memory=max_memory, cache=cache)


@main.command(epilog=COMPARE_EXIT_CODES)
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", type=click.Choice(REPORT_FORMAT_NAMES), help=FORMAT_HELP)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the comparison to this file (atomically) instead of stdout; missing folders are created.")
@click.option("--step-rate", type=PositiveRate("Hz"), metavar="HZ",
              help="Time steps per second for every model (default: each report's own, if saved with one).")
@click.option("--budget", type=PositiveRate("ops/s"), metavar="OPS_PER_S",
              help="Neuron ops/s the hardware sustains: a verdict per model (default: each report's own).")
@click.option("--budget-basis", type=click.Choice(["dense", "effective"]),
              help="dense or effective ops/s against the budget (default: dense for --budget; a saved budget "
                   "keeps its saved basis).")
@click.option("--energy-table", type=click.Path(path_type=Path), metavar="FILE",
              help="Energy table for every model (default: each report's own, if saved with one).")
@handle_errors
def compare(reports: tuple[Path, ...], fmt: str | None, output: Path | None, step_rate: float | None,
            budget: float | None, budget_basis: str | None, energy_table: Path | None) -> None:
    """Show saved JSON reports (from `estimate --format json`) side by side: which variant fits the budget?"""
    from .compare import compare as run_compare
    from .feasibility import read_energy_table
    from .formats_compare import COMPARE_FORMATS

    fmt = output_format(fmt, output, REPORT_FORMAT_NAMES, (*reports, energy_table))
    energy = read_energy_table(energy_table) if energy_table is not None else None
    comparison = run_compare(_expanded(reports), step_rate, budget, budget_basis, energy)
    emit(COMPARE_FORMATS[fmt](comparison), output)


def _expanded(paths: tuple[Path, ...]) -> tuple[Path, ...]:
    """Quoted wildcard patterns ('runs/*.json'), expanded as the shell would have (sorted); a path that exists is
    taken as it is, and a pattern matching nothing stays, to be reported missing."""
    import glob

    found: list[Path] = []
    for path in paths:
        matches = [] if path.exists() else sorted(glob.glob(str(path)))
        found.extend(map(Path, matches) if matches else [path])
    return tuple(found)


def _listing_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--format and --output of `layers` and `explain`."""
    command = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                           help="Write to this file (atomically) instead of stdout; missing folders are created.")(
        command)
    return click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]),
                        help="Default: json for an -o FILE.json, else table.")(command)


@main.command(cls=_OneModelCommand, epilog=MODEL_EXIT_CODES)
@click.argument("model", type=click.Path(path_type=Path))
@_listing_options
@cache_option
@handle_errors
def layers(model: Path, fmt: str | None, output: Path | None, cache: bool) -> None:
    """List the neuron layers found in MODEL: kind, reset, size, steps, and how each was recognised."""
    from .api import analyse
    from .formats import format_layers, layers_json

    fmt = output_format(fmt, output, ["table", "json"], (model,))
    analysis = analyse(model, cache=cache)
    shown = layers_json if fmt == "json" else format_layers
    emit(shown(str(model), analysis.match, analysis.warnings), output)


@main.command(cls=_OneModelCommand, epilog=MODEL_EXIT_CODES)
@click.argument("model", type=click.Path(path_type=Path))
@_listing_options
@cache_option
@handle_errors
def explain(model: Path, fmt: str | None, output: Path | None, cache: bool) -> None:
    """Show, per candidate layer, the update read from the graph, the kind it matched or why each kind refused."""
    from .api import analyse
    from .formats import explain_json, format_explain

    fmt = output_format(fmt, output, ["table", "json"], (model,))
    analysis = analyse(model, cache=cache)
    shown = explain_json if fmt == "json" else format_explain
    emit(shown(str(model), analysis.match, analysis.warnings), output)


@main.command("cache", epilog=CACHE_EXIT_CODES)
@click.option("--clear", is_flag=True, help="Remove every entry.")
@handle_errors
def cache_command(clear: bool) -> None:
    """Show (or --clear) the analysis cache: what `estimate`, `batch`, `layers` and `explain` keep per model file
    so that the next run skips loading and matching the graph.

    \b
    Each entry is <sha256>.json (the layers found, tensor shapes, the model's
    warnings) and, once the model has been replayed, <sha256>.onnx (the model with
    the replay's extra outputs) and, for a model replayed in few runs, <sha256>.ort
    (the same in onnxruntime's format, which loads faster). Entries are keyed by
    the model file's bytes and the versions of neuronops, onnx and onnxruntime: an
    edited model or a new version never reads an old entry. Models with external
    data are not cached; the least recently used entries go beyond 2 GiB.

    \b
    Folder: $NEURONOPS_CACHE_DIR, else $XDG_CACHE_HOME/neuronops, else
    ~/.cache/neuronops. Off: --no-cache, or NEURONOPS_CACHE=0.
    """
    from . import cache
    from .limits import format_size

    folder = cache.cache_dir()
    if folder is None:
        click.echo("analysis cache: off (NEURONOPS_CACHE=0)")
        return
    if folder.exists() and not folder.is_dir():  # estimate and the others then run uncached, silently
        raise NeuronopsError(f"{folder}: the analysis cache folder is a file; set NEURONOPS_CACHE_DIR to a folder "
                             "(or NEURONOPS_CACHE=0 to run without the cache)")
    if clear:
        removed = cache.clear(folder)
        click.echo(f"analysis cache: {folder}: {removed} entr{'y' if removed == 1 else 'ies'} removed")
        return
    found = cache.entries(folder) if folder.is_dir() else []
    total = sum(size for _, size, _ in found)
    click.echo(f"analysis cache: {folder}: {len(found)} entr{'y' if len(found) == 1 else 'ies'}, "
               f"{format_size(total)}")


@main.command(epilog=BATCH_EXIT_CODES)
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "-o", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for results/<name>.json (one per model), summary.csv and summary.json.")
@click.option("--inputs-pattern", metavar="PATTERN",
              help="Inputs of models given as paths or globs, e.g. '{dir}/inputs.npz' ({dir}, {stem}, {name} of "
                   "the model). Default: <stem>.npz, <stem>.npy, inputs.npz or inputs.npy beside the model.")
@click.option("--convention", "-c", type=CONVENTION_CHOICE, default="spikes", show_default=True,
              help="Default for models whose manifest row names none.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), help="Samples per onnxruntime run.")
@click.option("--time-axis", type=int, default=1, show_default=True, help="Axis of the time steps in the inputs.")
@click.option("--steps", type=click.IntRange(min=1), help="Time steps for dense ops of stepwise models without inputs.")
@click.option("--cost-table", "cost_tables", multiple=True, type=click.Path(path_type=Path),
              help="A TOML cost table laid over the bundled ones (repeatable).")
@click.option("--strict", is_flag=True, help="A model with uncosted layers fails (exit 3 if that is all that failed).")
@click.option("--allow-nonfinite", is_flag=True,
              help="Replay inputs holding NaN or ±Inf (with a warning) instead of failing those models.")
@click.option("--timeout", type=Seconds(), default=None, metavar="SECONDS",
              help="Give up on a job (a whole model, or one shard of its samples) that runs longer: that model "
                   "fails, the others go on.")
@click.option("--max-memory", type=MemorySize(), default=None,
              help="Memory one job's replay may use, e.g. 2GB (each worker runs one job at a time): its batch is "
                   "shrunk to fit, or the model fails. Default: no limit.")
@click.option("--jobs", "-j", type=click.IntRange(min=1),
              help="Local worker processes, one onnxruntime thread each [default: 1]; with --scheduler local, the "
                   "number of Dask workers.")
@click.option("--shard-size", type=click.IntRange(min=1),
              help="Samples per job. Default: about 4 jobs per worker per model, at least 256 samples, in whole "
                   "batches.")
@click.option("--resume", is_flag=True,
              help="Keep the results already in --out for the same model, inputs and options; run only the rest.")
@cache_option
@dask_options
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Times a job is sent again after its worker died (or, on Dask, raised).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: only when stderr is a terminal).")
@handle_errors
def batch(sources: tuple[str, ...], out: Path, inputs_pattern: str | None, convention: str, batch_size: int | None,
          time_axis: int, steps: int | None, cost_tables: tuple[Path, ...], strict: bool, allow_nonfinite: bool,
          timeout: float | None, max_memory: int | None, jobs: int | None, shard_size: int | None, resume: bool,
          cache: bool, scheduler: str | None, scheduler_file: Path | None, ship: str, max_shard_mb: int, retries: int,
          progress: bool | None) -> None:
    """Estimate many models: SOURCES are manifests (.csv, .jsonl, .json), models, quoted globs or folders.

    Each model's samples are cut into jobs run by worker processes (--jobs) or a Dask cluster (--scheduler);
    integer counts are added up per model and divided once, so the figures equal `neuronops estimate` exactly.
    A model that fails is listed with its error; the others are written.
    """
    from .batch import collect, run_batch, total_samples
    from .parallel import ModelJob, open_backend

    scheduler = _scheduler(jobs, scheduler, scheduler_file)
    defaults = ModelJob(model="", convention=convention, batch_size=batch_size, time_axis=time_axis, steps=steps,
                        cost_tables=tuple(map(str, cost_tables)), strict=strict, allow_nonfinite=allow_nonfinite,
                        timeout=timeout, max_memory=max_memory, cache=cache)
    entries = collect(sources, defaults, inputs_pattern)
    backend = open_backend(jobs or 1, scheduler, str(scheduler_file) if scheduler_file else None, ship,
                           max_shard_mb * 2**20, retries)
    show = _stderr_is_terminal() if progress is None else progress
    total = total_samples(entries)
    done_models = 0
    bar = click.progressbar(length=total or len(entries), label=f"0/{len(entries)} models", file=sys.stderr,
                            show_pos=True) if show else None

    def on_samples(count: int) -> None:
        if bar is not None and total:
            bar.update(count)

    def on_model(entry: Any, error: str | None) -> None:
        nonlocal done_models
        done_models += 1
        if error is not None:
            prefix = "" if bar is None else "\n"  # below the bar's line, not on it
            click.echo(f"{prefix}failed: {entry.name}: {error}", err=True)
        if bar is not None:
            bar.label = f"{done_models}/{len(entries)} models"
            if total:
                bar.render_progress()  # the label changed; the position moves with on_samples
            else:
                bar.update(1)

    with backend:
        if bar is not None:
            bar.__enter__()
        try:
            summary = run_batch(entries, out, backend, resume=resume, shard_size=shard_size, on_samples=on_samples,
                                on_model=on_model, write=write_atomic)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    resumed = f", {summary.resumed} kept from an earlier run" if summary.resumed else ""
    models = f"{len(summary.rows)} model{'s' if len(summary.rows) != 1 else ''}"
    click.echo(f"{models}: {len(summary.rows) - summary.failed} ok, {summary.failed} failed"
               f"{resumed} ({backend.description}); summary: {out / 'summary.csv'}")
    if summary.failed:
        _fail(f"{summary.failed} of {len(summary.rows)} models failed; see {out / 'summary.csv'}",
              summary.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
