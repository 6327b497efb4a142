"""Replays split into jobs — (model, shard of samples [start, stop)) — run by worker processes: a local process pool
(`--jobs N`) or a Dask cluster (`--scheduler`). One code path for both; only the backend that runs shards differs.

Workers return exact integer counts (`ReplayCounts`); the client adds a model's shards up (integers) and builds the
report once, dividing once by the number of samples — never averaging averages — so any split of the samples gives
exactly the figures of a single-process run. onnxruntime sessions are not picklable: each worker process opens one
per model and keeps it for that model's next shards.

Shards travel as file paths (absolute; the workers must see the same files: one machine, or a shared filesystem)
or, with `ship="bytes"` on a Dask cluster, as the model's bytes (sent once per model) and the shard's slice of the
inputs, each shard capped at `max_shard_bytes`.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import hashlib
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import zipfile
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .api import Analysis, analyse, convention_name, cost_table_paths, finish_report, replay_report
from .costs import CostTable, load_costs
from .errors import (
    EXIT_ERROR,
    ClusterError,
    InputError,
    MissingExtraError,
    NeuronopsError,
    UncostedLayersError,
    UsageError,
)
from .inputs import RecordedInputs, read_inputs
from .kinds import KindsSpec, NeuronKind, kinds_spec, registered_kinds, restore_kinds
from .limits import Deadline
from .replay import DEFAULT_BATCH_SIZE, ReplayCounts, check_inputs, open_session, replay
from .report import CONVENTIONS, Report

DEFAULT_MAX_SHARD_BYTES = 256 * 2**20
DEFAULT_RETRIES = 2
SHARDS_PER_WORKER = 4  # several shards per worker per model: balances uneven workers and moves the progress bar
MIN_SHARD_SAMPLES = 256  # below this, a model's samples stay one job (by default)
OUT_OF_MEMORY = "out of memory while estimating this model: try a smaller --batch-size or set --max-memory"


@dataclass(frozen=True)
class ModelJob:
    """One model to estimate: what `estimate()` takes, as plain data."""

    model: str
    inputs: str | None = None
    convention: str = "spikes"
    batch_size: int | None = None
    time_axis: int = 1
    steps: int | None = None
    cost_tables: tuple[str, ...] = ()
    strict: bool = False
    allow_nonfinite: bool = False
    timeout: float | None = None  # seconds per job (the whole model, or one shard of it); never changes a count
    max_memory: int | None = None  # bytes one job's replay may use (its batch is shrunk to fit, or it fails)
    cache: bool = True  # read and write the analysis cache (cache.py); never changes a count


@dataclass(frozen=True)
class Shard:
    """Samples [start, stop) of one model's inputs: the unit of work a worker runs."""

    job: int  # index of the model in the run's job list
    model: str  # absolute path, or the sha256 of the model's bytes when they travel with the shard
    inputs: str  # absolute path; "" when the shard's arrays travel with it
    time_axis: int
    batch_size: int | None
    start: int
    stop: int
    threads: int = 1
    timeout: float | None = None
    max_memory: int | None = None
    cache: bool = True  # the worker may read and write the analysis cache

    @property
    def samples(self) -> int:
        return self.stop - self.start

    def where(self) -> str:
        return f"samples [{self.start}, {self.stop})"


@dataclass(frozen=True)
class ShardResult:
    """What a worker sends back: integer counts, or the one-line error of our own error classes."""

    shard: Shard
    counts: ReplayCounts | None
    layer_names: tuple[str, ...] = ()
    error: str | None = None
    exit_code: int = EXIT_ERROR


@dataclass(frozen=True)
class JobOutcome:
    """A model's result: its report, or why it failed (with the sample range when a shard failed)."""

    index: int
    job: ModelJob
    report: Report | None = None
    error: str | None = None
    exit_code: int = 0


# ---------------------------------------------------------------- worker side (runs in the worker processes)

_LOCK = threading.Lock()  # a Dask worker may run several shards at once in threads
_MODELS: OrderedDict[tuple, tuple[Analysis, Any]] = OrderedDict()
_INPUTS: OrderedDict[tuple, RecordedInputs] = OrderedDict()
_MODEL_CACHE, _INPUT_CACHE = 4, 2  # models (session + graph) and inputs files kept per worker process
_BLOB_DIR: list[str] = []
_KINDS: list[KindsSpec | None] = [None]  # the registry this worker process was last given


def _file_key(path: str) -> tuple:
    # A model or inputs file rewritten between runs must not be served from the cache.
    try:
        stat = os.stat(path)
    except OSError:
        return (path,)
    return (path, stat.st_mtime_ns, stat.st_size)


def _cached(cache: OrderedDict, key: tuple, size: int, make: Callable[[], Any]) -> Any:
    with _LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = make()  # outside the lock: opening a session can take a while
    with _LOCK:
        cache[key] = value
        while len(cache) > size:
            cache.popitem(last=False)
    return value


def _blob_path(digest: str, blob: bytes) -> str:
    """load_model reads files: write a shipped model once per worker process into a private temporary folder."""
    with _LOCK:
        if not _BLOB_DIR:
            _BLOB_DIR.append(tempfile.mkdtemp(prefix="neuronops-models-"))
            atexit.register(shutil.rmtree, _BLOB_DIR[0], True)
    path = os.path.join(_BLOB_DIR[0], f"{digest}.onnx")
    if not os.path.exists(path):
        if hashlib.sha256(blob).hexdigest() != digest:
            raise ClusterError(f"model bytes for {digest[:12]} arrived corrupted")
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(blob)
        os.replace(tmp, path)
    return path


def _use_kinds(spec: KindsSpec | None) -> None:
    """The client's neuron kinds (those registered from Python too), before this task matches anything."""
    with _LOCK:
        if spec is not None or _KINDS[0] is not None:
            restore_kinds(spec)
            _KINDS[0] = spec


def _model_for(shard: Shard, blob: bytes | None) -> tuple[Analysis, Any]:
    path = _blob_path(shard.model, blob) if blob is not None else shard.model
    kinds = tuple((kind.name, getattr(kind.recognise, "__module__", ""), getattr(kind.recognise, "__qualname__", ""))
                  for kind in registered_kinds())  # another registry matches differently
    key = (("sha256", shard.model) if blob is not None else _file_key(path)) + (shard.threads, kinds)

    def make() -> tuple[Analysis, Any]:
        # once per worker process (kept in memory); from the analysis cache when this model file was replayed before
        analysis = analyse(path, for_replay=True, cache=shard.cache)
        assert analysis.plan is not None
        return analysis, open_session(analysis.plan, shard.threads)

    return _cached(_MODELS, key, _MODEL_CACHE, make)


def _recorded(path: str, analysis: Analysis, time_axis: int) -> RecordedInputs:
    key = _file_key(path) + (time_axis, analysis.match.data_inputs, tuple(analysis.match.static_steps().items()))
    return _cached(_INPUTS, key, _INPUT_CACHE, lambda: read_inputs(path, analysis.match.data_inputs, time_axis,
                                                                           static=analysis.match.static_steps()))


@dataclass(frozen=True)
class ModelResult:
    """A whole-model job's answer: the report (built on the worker), or the one-line error."""

    report: Report | None
    error: str | None = None
    exit_code: int = EXIT_ERROR


def run_model(job: ModelJob, shown_as: str, threads: int = 1, kinds: KindsSpec | None = None) -> ModelResult:
    """Estimate a model whose samples fit one shard, entirely on the worker: what `estimate()` does, step by step,
    with the worker's cached session. `job` holds absolute paths; the report names the model as `shown_as`."""
    try:
        _use_kinds(kinds)
        if job.convention not in CONVENTIONS:
            raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}, got {job.convention!r}")
        deadline = Deadline(job.timeout)
        table = load_costs(job.cost_tables)
        if job.inputs is None:
            analysis = analyse(job.model, cache=job.cache)
            return ModelResult(finish_report(shown_as, analysis, table, job.convention, None, job.steps, job.strict,
                                             analysis.warnings))
        shard = Shard(-1, job.model, job.inputs, job.time_axis, job.batch_size, 0, 0, threads, cache=job.cache)
        analysis, session = _model_for(shard, None)
        deadline.check("analysing the model")
        recorded = _recorded(job.inputs, analysis, job.time_axis)
        return ModelResult(replay_report(shown_as, analysis, recorded, table, convention=job.convention,
                                         steps=job.steps, strict=job.strict, batch_size=job.batch_size,
                                         threads=threads, allow_nonfinite=job.allow_nonfinite,
                                         max_memory=job.max_memory, deadline=deadline, session=session))
    except NeuronopsError as err:
        return ModelResult(None, str(err), err.exit_code)
    except MemoryError:  # this model's failure: the batch goes on with the others
        return ModelResult(None, OUT_OF_MEMORY, EXIT_ERROR)


def run_shard(shard: Shard, blob: bytes | None = None, arrays: dict[str, np.ndarray] | None = None,
              kinds: KindsSpec | None = None) -> ShardResult:
    """Replay one shard and return its integer counts. Our own errors come back as values (they are deterministic:
    retrying them would only repeat them); anything else raises, so Dask retries it."""
    try:
        _use_kinds(kinds)
        analysis, session = _model_for(shard, blob)
        if arrays is None:
            recorded = _recorded(shard.inputs, analysis, shard.time_axis)
            sample_range: tuple[int, int] | None = (shard.start, shard.stop)
        else:
            recorded = RecordedInputs(arrays, Path(f"<{shard.where()}>"))
            sample_range = None
        # the client checked the whole inputs (check_inputs) before cutting them into shards
        assert analysis.plan is not None
        counts = replay(analysis.plan, recorded, batch_size=shard.batch_size,
                        threads=shard.threads, sample_range=sample_range, session=session, check_finite=False,
                        max_memory=shard.max_memory, deadline=Deadline(shard.timeout))
        return ShardResult(shard, counts, tuple(layer.name for layer in analysis.match.layers))
    except NeuronopsError as err:
        return ShardResult(shard, None, error=str(err), exit_code=err.exit_code)


# ---------------------------------------------------------------- backends: who runs the shards


class WorkerLost(Exception):
    """A local worker process died while it held shards (the pool is rebuilt and the shards sent again)."""


class Backend(ABC):
    """Runs jobs. `submit` returns a future; `wait` returns the finished ones; `result` gives the job's answer."""

    workers: int = 1
    ships_bytes: bool = False
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    retries: int = DEFAULT_RETRIES
    handles_worker_loss: bool = False  # True: the backend retries lost workers itself (Dask)
    pickles_functions: bool = True  # False: tasks go through the standard pickle (functions only by reference)
    description: str = ""

    @abstractmethod
    def submit(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run function(*args) on a worker (function is run_shard or run_model)."""

    def wait(self, futures: Sequence[Any]) -> set[Any]:
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return done

    def result(self, future: Any) -> Any:
        return future.result()

    def cancel(self, futures: Sequence[Any]) -> None:
        for future in futures:
            future.cancel()

    def share(self, blob: bytes) -> Any:
        """Send a model's bytes to the workers once; shards refer to the returned handle."""
        return blob

    def recover(self) -> None:  # noqa: B027 (an optional hook: most backends have nothing to do)
        """After WorkerLost: make the backend usable again."""

    def close(self) -> None:  # noqa: B027 (an optional hook: most backends have nothing to do)
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineBackend(Backend):
    """--jobs 1: shards run in this process, one after another (same code as the workers run)."""

    description = "1 process"

    def submit(self, function: Callable[..., Any], *args: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(function(*args))
        except Exception as err:  # an unexpected failure stays this shard's failure
            future.set_exception(err)
        return future


def _spawn_hint() -> str:
    """Why local workers die at once when the work starts from a script: each spawned worker imports the script, and
    a script that starts the work at its top level starts it again in every worker (which multiprocessing refuses).
    Said only when the main module is a script of the user's, not this package's CLI."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if main is None or not getattr(main, "__file__", None) or (spec is not None and spec.name.startswith("estimator")):
        return ""
    from .cli import main as cli_main

    if getattr(main, "main", None) is cli_main:  # the `neuronops` console script
        return ""
    return ('; if this runs from a Python script, start the work under `if __name__ == "__main__":` (each worker '
            "process imports the script)")


class ProcessBackend(Backend):
    """--jobs N: N local worker processes (spawned: a clean interpreter each, never a forked onnxruntime)."""

    pickles_functions = False

    def __init__(self, jobs: int, retries: int = DEFAULT_RETRIES) -> None:
        self.workers = jobs
        self.retries = retries
        self.description = f"{jobs} local worker processes"
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_ignore_interrupts)

    def submit(self, function: Callable[..., Any], *args: Any) -> cf.Future:
        try:
            return self._pool.submit(function, *args)
        except cf.process.BrokenProcessPool:  # a worker died after its last shard (idle): no result was lost
            self.recover()
            return self._pool.submit(function, *args)

    def result(self, future: cf.Future) -> Any:
        try:
            return future.result()
        except cf.process.BrokenProcessPool as err:
            raise WorkerLost(str(err) or "a worker process died") from None

    def recover(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._new_pool()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is KeyboardInterrupt:  # Ctrl-C: the workers ignore it (no traceback from each), so stop them here
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
            self._pool.shutdown(wait=False, cancel_futures=True)
        else:
            self.close()


def _ignore_interrupts() -> None:
    """Worker processes leave Ctrl-C to the client: it is sent to the whole process group, and an idle worker
    interrupted in its queue wait printed a traceback; the client stops them (ProcessBackend.__exit__)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise MissingExtraError(
            "--scheduler needs Dask: pip install 'neuronops[dask]' (dask[distributed])"
        ) from None
    return distributed


class DaskBackend(Backend):
    """Shards as Dask tasks. Dask retries a task whose worker died (and `retries` times one that raised)."""

    handles_worker_loss = True

    def __init__(self, client: Any, cluster: Any = None, ship: str = "paths",
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, retries: int = DEFAULT_RETRIES) -> None:
        self._distributed = _import_distributed()
        self.client, self._cluster = client, cluster
        self.ships_bytes = ship == "bytes"
        self.max_shard_bytes = max_shard_bytes
        self.retries = retries
        info = client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(worker.get("nthreads", 1) for worker in workers.values())
        self.workers = max(1, threads)  # shards in flight at once: one per worker thread
        self.description = (f"Dask scheduler {info.get('address', '?')} ({len(workers)} worker(s), {threads} "
                            f"thread(s) in all, shards as {ship})")

    @classmethod
    def connect(cls, scheduler: str | None = None, scheduler_file: str | None = None, workers: int | None = None,
                **options: Any) -> DaskBackend:
        """`scheduler` is an address (tcp://host:8786) or "local" (start a LocalCluster of worker processes)."""
        distributed = _import_distributed()
        if scheduler_file is not None and not os.path.isfile(scheduler_file):
            # Dask would wait for the file to appear, forever
            raise ClusterError(f"{scheduler_file}: no such scheduler file (dask scheduler --scheduler-file writes it)")
        cluster = None
        try:
            if scheduler == "local":
                cluster = distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                                   processes=True, dashboard_address=":0")
                client = distributed.Client(cluster)
            elif scheduler_file is not None:
                client = distributed.Client(scheduler_file=scheduler_file, timeout="20s")
            else:
                client = distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as err:
            if cluster is not None:
                cluster.close()
            where = scheduler_file or scheduler
            # an address the environment set for other Dask work is easily forgotten: say where it came from
            source = (" (from $DASK_SCHEDULER_ADDRESS; --jobs 1 runs in this process)"
                      if scheduler_file is None and scheduler == os.environ.get("DASK_SCHEDULER_ADDRESS") else "")
            raise ClusterError(f"cannot reach the Dask scheduler at {where}{source}: "
                               f"{' '.join(str(err).split())[:200]}") from None
        return cls(client, cluster, **options)

    def submit(self, function: Callable[..., Any], *args: Any) -> Any:
        return self.client.submit(function, *args, pure=False, retries=self.retries)

    def wait(self, futures: Sequence[Any]) -> set[Any]:
        done, _ = self._distributed.wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done)

    def result(self, future: Any) -> Any:
        return future.result()

    def cancel(self, futures: Sequence[Any]) -> None:
        if futures:
            self.client.cancel(list(futures))

    def share(self, blob: bytes) -> Any:
        return self.client.scatter(blob, hash=False)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def open_backend(jobs: int = 1, scheduler: str | None = None, scheduler_file: str | None = None,
                 ship: str = "paths", max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                 retries: int = DEFAULT_RETRIES) -> Backend:
    """Local processes unless a Dask scheduler is named (an address, "local", or a scheduler file)."""
    if ship not in ("paths", "bytes"):
        raise ValueError("ship must be 'paths' or 'bytes'")
    if scheduler is not None or scheduler_file is not None:
        return DaskBackend.connect(scheduler, scheduler_file, workers=jobs if scheduler == "local" else None,
                                   ship=ship, max_shard_bytes=max_shard_bytes, retries=retries)
    if ship == "bytes":
        raise MissingExtraError("shipping shards as bytes needs a Dask cluster (--scheduler)")
    return InlineBackend() if jobs <= 1 else ProcessBackend(jobs, retries)


# ---------------------------------------------------------------- the client: plan, submit, merge


def peek_samples(path: str | os.PathLike[str]) -> int | None:
    """Samples (axis 0) in an inputs file, read from the array headers only; None when unknown."""
    try:
        if str(path).endswith(".npy"):
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        with zipfile.ZipFile(path) as archive:
            member = next(name for name in archive.namelist() if name.endswith(".npy"))
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _, _ = reader(handle)
                return int(shape[0]) if shape else None
    except Exception:  # a bad file is reported properly when the model is planned
        return None


def shard_bounds(samples: int, workers: int, batch_size: int | None, shard_size: int | None) -> list[tuple[int, int]]:
    """Cut [0, samples) into shards: `shard_size` samples each, or by default about SHARDS_PER_WORKER per worker but
    at least MIN_SHARD_SAMPLES, rounded up to whole batches (the counts do not depend on the cut; whole batches keep
    onnxruntime runs full, and small datasets stay one job: cutting them would cost more than it saves)."""
    if shard_size is None:
        batch = batch_size or DEFAULT_BATCH_SIZE
        target = max(MIN_SHARD_SAMPLES, math.ceil(samples / (SHARDS_PER_WORKER * max(1, workers))))
        shard_size = math.ceil(target / batch) * batch
    return [(start, min(start + shard_size, samples)) for start in range(0, samples, shard_size)]


@dataclass
class _Plan:
    index: int
    job: ModelJob
    analysis: Analysis | None
    table: CostTable | None
    samples: int = 0
    shards: list[Shard] = field(default_factory=list)
    payloads: list[tuple[Any, dict[str, np.ndarray] | None]] = field(default_factory=list)
    counts: ReplayCounts | None = None
    remaining: int = 0
    failed: bool = False
    warnings: tuple[str, ...] = ()  # the model's (ONNX checker) and the inputs' (casts, non-finite values)
    notes: tuple[str, ...] = ()
    whole: bool = False  # one job runs the whole model on a worker (run_model); the client never opens it


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _plan(index: int, job: ModelJob, backend: Backend, shard_size: int | None, threads: int) -> _Plan:
    """Check the model and its inputs on the client (a broken model fails here, before any shard is sent) and cut
    the inputs into shards."""
    if job.convention not in CONVENTIONS:
        raise InputError(f"convention must be one of {', '.join(CONVENTIONS)}, got {job.convention!r}")
    table = load_costs(job.cost_tables)
    analysis = analyse(job.model, for_replay=job.inputs is not None, cache=job.cache)
    plan = _Plan(index, job, analysis, table, warnings=analysis.warnings)
    if job.inputs is None:
        return plan
    recorded = read_inputs(job.inputs, analysis.match.data_inputs, job.time_axis,
                           static=analysis.match.static_steps())
    assert analysis.plan is not None
    checked = check_inputs(analysis.plan, recorded, job.allow_nonfinite)  # once, for all shards
    plan.warnings, plan.notes = analysis.warnings + checked.warnings, checked.notes
    plan.samples = recorded.samples
    model_ref, blob, model_size = os.path.abspath(job.model), None, 0
    limit = backend.max_shard_bytes
    if backend.ships_bytes:
        from .load import load_model

        raw = load_model(job.model).original.SerializeToString()  # external data folded in
        model_size = len(raw)
        per_sample = sum(array[:1].nbytes for array in recorded.arrays.values())
        if model_size + per_sample > limit:
            raise ClusterError(
                f"{job.model}: one shard would ship {_mib(model_size + per_sample)} (model {_mib(model_size)}), "
                f"above the {_mib(limit)} limit (--max-shard-mb); use --ship paths on a shared filesystem"
            )
        if shard_size is None:  # the default cut, shrunk until a shard fits the limit
            fit = (limit - model_size) // max(1, per_sample)
            default = shard_bounds(plan.samples, backend.workers, job.batch_size, None)
            shard_size = min(default[0][1] - default[0][0], fit)
        model_ref = hashlib.sha256(raw).hexdigest()
        blob = backend.share(raw)
    for start, stop in shard_bounds(plan.samples, backend.workers, job.batch_size, shard_size):
        arrays = None
        if backend.ships_bytes:
            arrays = {name: np.ascontiguousarray(array[start:stop]) for name, array in recorded.arrays.items()}
            size = model_size + sum(array.nbytes for array in arrays.values())
            if size > limit:
                raise ClusterError(
                    f"{job.model}: shard [{start}, {stop}) would ship {_mib(size)}, above the {_mib(limit)} limit "
                    "(--max-shard-mb); use a smaller --shard-size, or --ship paths on a shared filesystem"
                )
        plan.shards.append(Shard(index, model_ref, "" if backend.ships_bytes else os.path.abspath(job.inputs),
                                 job.time_axis, job.batch_size, start, stop, threads, job.timeout, job.max_memory,
                                 job.cache))
        plan.payloads.append((blob, arrays))
    plan.remaining = len(plan.shards)
    return plan


def _whole(index: int, job: ModelJob, backend: Backend, shard_size: int | None) -> _Plan | None:
    """A model whose samples fit one shard (or that has no inputs) is one job, run entirely by a worker: the client
    neither loads it nor reads its inputs, so many small models keep every worker busy. Shipping bytes needs the
    client to read the model, so it always plans on the client."""
    if backend.ships_bytes:
        return None
    samples = peek_samples(job.inputs) if job.inputs else 0
    if samples and len(shard_bounds(samples, backend.workers, job.batch_size, shard_size)) > 1:
        return None
    plan = _Plan(index, job, None, None, samples=samples or 0, whole=True, remaining=1)
    plan.shards.append(Shard(index, os.path.abspath(job.model), os.path.abspath(job.inputs) if job.inputs else "",
                             job.time_axis, job.batch_size, 0, samples or 0, cache=job.cache))
    plan.payloads.append((None, None))
    return plan


def _absolute(job: ModelJob) -> ModelJob:
    """The job as a worker elsewhere (another working folder, another machine with a shared filesystem) reads it."""
    return replace(job, model=os.path.abspath(job.model), inputs=os.path.abspath(job.inputs) if job.inputs else None,
                   cost_tables=tuple(os.path.abspath(t) for t in job.cost_tables))


def _finish(plan: _Plan) -> JobOutcome:
    job = plan.job
    assert plan.analysis is not None and plan.table is not None
    try:
        report = finish_report(str(job.model), plan.analysis, plan.table, job.convention, plan.counts, job.steps,
                               job.strict, plan.warnings, plan.notes)
    except UncostedLayersError as err:
        return JobOutcome(plan.index, job, error=str(err), exit_code=err.exit_code)
    return JobOutcome(plan.index, job, report)


def run_jobs(
    jobs: Sequence[ModelJob],
    backend: Backend,
    *,
    shard_size: int | None = None,
    threads: int = 1,
    on_samples: Callable[[int], None] | None = None,
    skip: Callable[[int], bool] | None = None,
) -> Iterator[JobOutcome]:
    """Run every job's shards on `backend` and yield each model's outcome as soon as its last shard is in (in
    completion order). A failing model never stops the others. `on_samples(n)` reports samples replayed (or given
    up on); `skip(i)` leaves job i out (a resumed batch)."""
    pending: dict[Any, tuple[_Plan, int, int]] = {}  # future → (plan, shard number, attempts)
    upcoming = iter(range(len(jobs)))
    window = 2 * backend.workers + 2  # shards queued ahead: workers never starve, the client plans lazily
    report_samples = on_samples or (lambda n: None)
    kinds = kinds_spec()  # kinds registered from Python travel with every task
    if kinds is not None and not backend.pickles_functions:
        for kind in kinds:
            if isinstance(kind, NeuronKind):
                try:
                    pickle.dumps(kind)
                except Exception:
                    raise UsageError(f"neuron kind {kind.name!r} cannot reach worker processes: its recognise "
                                     "function cannot be pickled; define it at module level (not a lambda or a "
                                     "nested function), or use one process") from None

    def submit(plan: _Plan, number: int, attempts: int) -> None:
        if plan.whole:
            future = backend.submit(run_model, _absolute(plan.job), str(plan.job.model), threads, kinds)
        else:
            blob, arrays = plan.payloads[number]
            future = backend.submit(run_shard, plan.shards[number], blob, arrays, kinds)
        pending[future] = (plan, number, attempts)

    def fail(plan: _Plan, message: str, code: int) -> JobOutcome:
        # the model's other shards are dropped (their results could not make a report any more)
        plan.failed = True
        dropped = [future for future, (other, _, _) in pending.items() if other is plan]
        backend.cancel(dropped)
        for future in dropped:
            _, number, _ = pending.pop(future)
            report_samples(plan.shards[number].samples)
        return JobOutcome(plan.index, plan.job, error=message, exit_code=code)

    while True:
        while len(pending) < window:
            index = next(upcoming, None)
            if index is None:
                break
            if skip is not None and skip(index):
                continue
            job = jobs[index]
            whole = _whole(index, job, backend, shard_size)
            if whole is not None:
                submit(whole, 0, 0)
                continue
            try:
                plan = _plan(index, job, backend, shard_size, threads)
            except (NeuronopsError, MemoryError) as err:
                known = peek_samples(job.inputs) if job.inputs else None
                report_samples(known or 0)
                message, code = ((str(err), err.exit_code) if isinstance(err, NeuronopsError)
                                 else (OUT_OF_MEMORY, EXIT_ERROR))
                yield JobOutcome(index, job, error=message, exit_code=code)
                continue
            if not plan.shards:
                yield _finish(plan)
                continue
            for number in range(len(plan.shards)):
                submit(plan, number, 0)
        if not pending:
            return
        for future in backend.wait(list(pending)):
            entry = pending.pop(future, None)
            if entry is None:  # dropped meanwhile (its model failed, or it was sent again after a lost worker)
                continue
            plan, number, attempts = entry
            shard = plan.shards[number]
            try:
                result = backend.result(future)
            except WorkerLost as err:
                if attempts < backend.retries:
                    # A local pool whose worker died fails every shard it held: rebuild it and send those again
                    # (shards already finished keep their results; nothing is counted twice).
                    backend.recover()
                    pending[future] = entry
                    for lost, (other, other_number, other_attempts) in list(pending.items()):
                        if lost.done() and not lost.cancelled() and lost.exception() is None:
                            continue
                        del pending[lost]
                        submit(other, other_number, other_attempts + 1)
                    continue
                result = ShardResult(shard, None, error=f"its worker process kept dying ({err}){_spawn_hint()}")
            except Exception as err:  # a shard that kept failing (Dask retried it) or a worker that kept dying
                text = " ".join(str(err).split())[:300]
                result = ShardResult(shard, None, error=f"{type(err).__name__}: {text}" if text else type(err).__name__)
            report_samples(shard.samples)
            where = "" if plan.whole else f"{shard.where()}: "  # a whole-model job's error is the model's
            if result.error is not None:
                yield fail(plan, f"{where}{result.error}", result.exit_code)
                continue
            if plan.whole:
                yield JobOutcome(plan.index, plan.job, result.report)
                continue
            assert plan.analysis is not None
            expected = tuple(layer.name for layer in plan.analysis.match.layers)
            if result.layer_names != expected:
                yield fail(plan, f"{shard.where()}: a worker found other neuron layers than the client "
                                 "(different neuronops versions or registered kinds?)", EXIT_ERROR)
                continue
            assert result.counts is not None
            plan.counts = result.counts if plan.counts is None else plan.counts.merge(result.counts)
            plan.remaining -= 1
            if plan.remaining == 0:
                yield _finish(plan)


def estimate_sharded(model: str | os.PathLike[str], inputs: str | os.PathLike[str], *, backend: Backend,
                     convention: str = "spikes", batch_size: int | None = None, time_axis: int = 1,
                     steps: int | None = None, cost_tables: Sequence[str] | str = (), strict: bool = False,
                     shard_size: int | None = None, allow_nonfinite: bool = False,
                     on_samples: Callable[[int], None] | None = None, timeout: float | None = None,
                     max_memory: int | None = None, cache: bool = True) -> Report:
    """`estimate()` with the samples split across the backend's workers: exactly the same report. `on_samples(n)`
    reports samples replayed as shards come in. `timeout` (seconds) and `max_memory` (bytes) bound each job."""
    if not isinstance(inputs, (str, os.PathLike)):  # workers read the file themselves, each its own samples
        raise InputError(f"a split run reads its inputs from a .npy/.npz file, not a {type(inputs).__name__}: save "
                         "them with numpy.save (or run estimate() in this process)")
    job = ModelJob(str(model), str(inputs), convention_name(convention), batch_size, time_axis, steps,
                   tuple(map(str, cost_table_paths(cost_tables))), strict, allow_nonfinite, timeout, max_memory, cache)
    outcome = next(run_jobs([job], backend, shard_size=shard_size, on_samples=on_samples))
    if outcome.report is None:
        error = UncostedLayersError if outcome.exit_code == UncostedLayersError.exit_code else NeuronopsError
        raise error(outcome.error or "failed")
    return outcome.report
