"""Batch estimation: many models from a manifest or globs, one result file each, a summary, and resume.

Output folder layout:
    OUT/results/<name>.json   one per model that finished: the JSON report plus a "batch" key (the job and its
                              input files' sizes and times) that --resume checks before trusting the file
    OUT/summary.csv           one row per model: status ok/error, the error, the totals
    OUT/summary.json          the same rows, plus counts
Every file is written atomically (temporary file + rename), so a killed batch leaves only whole result files.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import EXIT_ERROR, EXIT_OK, EXIT_UNCOSTED, ManifestError, NeuronopsError, require_file
from .formats_text import _cell
from .parallel import Backend, JobOutcome, ModelJob, peek_samples, run_jobs
from .report import CONVENTIONS, SCHEMA

SUMMARY_SCHEMA = "neuronops.batch-summary/1"
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")
MANIFEST_KEYS = ("model", "inputs", "name", "convention", "batch_size", "time_axis", "steps", "cost_table", "strict",
                 "allow_nonfinite")
BESIDE_MODEL = ("{dir}/{stem}.npz", "{dir}/{stem}.npy", "{dir}/inputs.npz", "{dir}/inputs.npy")
SUMMARY_COLUMNS = ("name", "status", "error", "model", "inputs", "convention", "samples", "time_steps", "per",
                   "neuron_dense_ops", "effective_neuron_ops", "effective_neuron_ops_run", "complete", "result")


@dataclass(frozen=True)
class BatchEntry:
    """A model of the batch and the name of its result file."""

    name: str
    job: ModelJob


# ---------------------------------------------------------------- what to run: manifests and globs


def _int(value: Any, key: str, where: str, minimum: int | None = None) -> int | None:
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError  # JSON's true is no batch size, 1.5 no axis (int() would take both)
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ManifestError(f"{where}: {key} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ManifestError(f"{where}: {key} must be at least {minimum}, got {number}")
    return number


def _bool(value: Any, key: str, where: str) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise ManifestError(f"{where}: {key} must be true or false, got {value!r}")


def _row_job(row: dict[str, Any], base: Path, defaults: ModelJob, where: str) -> tuple[str | None, ModelJob]:
    unknown = sorted(set(row) - set(MANIFEST_KEYS))
    if unknown:
        raise ManifestError(f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(MANIFEST_KEYS)}")
    model = row.get("model")
    if not model:
        raise ManifestError(f"{where}: no model")
    for key in ("model", "inputs", "name", "convention"):
        if row.get(key) not in (None, "") and not isinstance(row[key], str):
            raise ManifestError(f"{where}: {key} must be a string (a path or a name), got {row[key]!r}")
    if row.get("cost_table") not in (None, "") and not (isinstance(row["cost_table"], str) or isinstance(
            row["cost_table"], list) and all(isinstance(item, str) for item in row["cost_table"])):
        raise ManifestError(f"{where}: cost_table must be a path or a list of paths, got {row['cost_table']!r}")

    def path(value: str) -> str:
        return str(base / value) if not os.path.isabs(value) else value  # relative to the manifest's folder

    convention = row.get("convention") or defaults.convention
    if convention not in CONVENTIONS:
        raise ManifestError(f"{where}: convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
    tables = row.get("cost_table")
    if isinstance(tables, str):
        tables = [part for part in tables.split(";") if part.strip()]  # CSV: several tables separated by ';'
    time_axis = _int(row.get("time_axis"), "time_axis", where)
    strict = _bool(row.get("strict"), "strict", where)
    allow_nonfinite = _bool(row.get("allow_nonfinite"), "allow_nonfinite", where)
    job = ModelJob(
        model=path(str(model)),
        inputs=path(str(row["inputs"])) if row.get("inputs") else defaults.inputs,
        convention=convention,
        batch_size=_int(row.get("batch_size"), "batch_size", where, 1) or defaults.batch_size,
        time_axis=defaults.time_axis if time_axis is None else time_axis,
        steps=_int(row.get("steps"), "steps", where, 1) or defaults.steps,
        cost_tables=tuple(path(t.strip()) for t in tables) if tables else defaults.cost_tables,
        strict=defaults.strict if strict is None else strict,
        allow_nonfinite=defaults.allow_nonfinite if allow_nonfinite is None else allow_nonfinite,
        timeout=defaults.timeout,
        max_memory=defaults.max_memory,
    )
    name = row.get("name")
    return (str(name) if name else None), job


def read_manifest(path: Path, defaults: ModelJob) -> list[tuple[str | None, ModelJob]]:
    """CSV (a header row naming the columns) or JSON lines (one object per line; `.json`: a list of objects).
    Columns: model (required), inputs, name, convention, batch_size, time_axis, steps, cost_table, strict; empty
    ones take the command line's values. Relative paths are relative to the manifest's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err})") from None
    base = path.parent
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "model" not in [f.strip() for f in reader.fieldnames]:
            raise ManifestError(f"{path}: a CSV manifest needs a header row with a 'model' column")
        # a misspelt column is the header's fault: said once, at the header's line
        unknown = sorted({f.strip() for f in reader.fieldnames} - set(MANIFEST_KEYS))
        if unknown:
            raise ManifestError(f"{path}:{reader.line_num}: unknown column(s) {', '.join(map(repr, unknown))}; "
                                f"known: {', '.join(MANIFEST_KEYS)}")
        for row in reader:
            if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
                continue
            if None in row:
                raise ManifestError(f"{path}:{reader.line_num}: more cells than header columns")
            rows.append((f"{path}:{reader.line_num}",
                         {key.strip(): (value or "").strip() for key, value in row.items()}))
    elif path.suffix == ".json" and text.lstrip()[:1] in ("[", "{"):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}: not valid JSON ({err})") from None
        if isinstance(items, dict):  # one object: a one-model manifest, or a file that is no manifest at all
            schema = items.get("schema")
            if isinstance(schema, str) and schema.startswith("neuronops."):
                raise ManifestError(f"{path}: a saved neuronops result ({schema}), not a manifest; batch takes models, "
                                    "globs, folders or manifests (.csv, .jsonl, .json: a list of objects with a "
                                    "'model' key); `neuronops compare` reads saved reports")
            items = [items]
        rows = [(f"{path}: entry {i + 1}", item) for i, item in enumerate(items)]
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                rows.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}:{number}: not a JSON object ({err.msg})") from None
    entries = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise ManifestError(f"{where}: expected an object with a 'model' key")
        entries.append(_row_job(row, base, defaults, where))
    if not entries:
        raise ManifestError(f"{path}: the manifest lists no model")
    return entries


def inputs_for(model: Path, pattern: str | None) -> str | None:
    """The inputs of a model found by a glob: `pattern` with {dir}, {stem} and {name} filled in, or else the first
    of <stem>.npz, <stem>.npy, inputs.npz, inputs.npy beside the model (none: dense ops only)."""
    fields = {"dir": str(model.parent), "stem": model.stem, "name": model.name}
    if pattern is not None:
        try:
            return pattern.format(**fields)
        except (KeyError, IndexError, ValueError) as err:
            raise ManifestError(f"--inputs-pattern {pattern!r}: use only {{dir}}, {{stem}}, {{name}} ({err})") \
                from None
    for candidate in BESIDE_MODEL:
        found = candidate.format(**fields)
        if os.path.isfile(found):
            return found
    return None


def collect(sources: Sequence[str], defaults: ModelJob, inputs_pattern: str | None = None) -> list[BatchEntry]:
    """Manifests (.csv, .jsonl, .ndjson, .json), models, globs of models (quoted: `'runs/**/*.onnx'`) and folders
    (every .onnx below them), in the order given; each model gets a unique result name."""
    found: list[tuple[str | None, ModelJob]] = []
    for source in sources:
        path = Path(source)
        if path.suffix in MANIFEST_SUFFIXES:
            require_file(path, ManifestError, "no such manifest", "a manifest file (.csv, .jsonl, .json)")
            found.extend(read_manifest(path, defaults))
            continue
        if path.is_dir():
            models = sorted(str(p) for p in path.rglob("*.onnx"))
        elif glob.has_magic(source):
            models = sorted(glob.glob(source, recursive=True))
        else:
            models = [source]  # a missing file is that model's error, reported with the others
        if not models:
            raise ManifestError(f"{source}: matches no model")
        for model in models:
            job = replace(defaults, model=model, inputs=inputs_for(Path(model), inputs_pattern))
            found.append((None, job))
    if not found:
        raise ManifestError("no models given: name models, globs, folders or a manifest")
    return _name(found)


def _name(found: list[tuple[str | None, ModelJob]]) -> list[BatchEntry]:
    """Result names: a manifest's name, else the model's path below the models' common folder without `.onnx`,
    '/' → '__' — only the folders when every model has the same file name (runs/a/model.onnx → a). Repeats get
    -2, -3… in order, so the same list always gives the same names (what --resume relies on)."""
    paths = [os.path.abspath(job.model) for _, job in found]
    common = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    unnamed = {os.path.basename(os.path.abspath(job.model)) for name, job in found if name is None}
    entries, used = [], set()
    for name, job in found:
        if name is None:
            relative = os.path.relpath(os.path.abspath(job.model), common)
            folders = os.path.dirname(relative)
            if len(unnamed) > 1 or not folders:
                name = os.path.splitext(relative)[0].replace(os.sep, "__")
            else:
                name = folders.replace(os.sep, "__")
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"
        unique, n = base, 1
        while unique in used:
            n += 1
            unique = f"{base}-{n}"
        used.add(unique)
        entries.append(BatchEntry(unique, job))
    return entries


# ---------------------------------------------------------------- results, resume, summary


def _stat(path: str | None) -> list[int] | None:
    try:
        stat = os.stat(path) if path else None
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns] if stat else None


def fingerprint(job: ModelJob) -> dict[str, Any]:
    """What a result depends on: the job (minus batch_size, which never changes a count) and its files' size and
    modification time. A result file with another fingerprint is recomputed on --resume."""
    return {
        "model": job.model, "inputs": job.inputs, "convention": job.convention, "time_axis": job.time_axis,
        "steps": job.steps, "cost_tables": list(job.cost_tables), "strict": job.strict,
        "allow_nonfinite": job.allow_nonfinite,
        "files": {"model": _stat(job.model), "inputs": _stat(job.inputs),
                  "cost_tables": [_stat(t) for t in job.cost_tables]},
    }


def result_path(out: Path, name: str) -> Path:
    return out / "results" / f"{name}.json"


def load_result(path: Path, job: ModelJob) -> dict[str, Any] | None:
    """The stored report if `path` is a whole result of this very job, else None (then it is recomputed)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or "totals" not in data:
        return None
    if data.get("batch") != json.loads(json.dumps(fingerprint(job))):
        return None
    return data


def _row(entry: BatchEntry, out: Path, data: dict[str, Any] | None, error: str | None) -> dict[str, Any]:
    job = entry.job
    row: dict[str, Any] = {"name": entry.name, "status": "ok" if data is not None else "error", "error": error or "",
                           "model": job.model, "inputs": job.inputs or "", "convention": job.convention}
    totals = (data or {}).get("totals") or {}
    row.update(samples=(data or {}).get("samples"), time_steps=(data or {}).get("time_steps"),
               per=(data or {}).get("per"),
               neuron_dense_ops=totals.get("neuron_dense_ops"), effective_neuron_ops=totals.get("effective_neuron_ops"),
               effective_neuron_ops_run=totals.get("effective_neuron_ops_run"), complete=totals.get("complete"))
    row["result"] = os.path.relpath(result_path(out, entry.name), out) if data is not None else ""
    return row


@dataclass(frozen=True)
class BatchSummary:
    rows: tuple[dict[str, Any], ...]  # one per model, SUMMARY_COLUMNS
    resumed: int  # models whose result file was reused (not part of the files: a resumed batch writes the same)
    exit_codes: tuple[int, ...] = ()  # each row's exit code, as `estimate` would have exited on that model alone

    @property
    def failed(self) -> int:
        return sum(row["status"] != "ok" for row in self.rows)

    @property
    def exit_code(self) -> int:
        """0 all ok; 3 when every failure is an uncosted layer under --strict; else 1 if any model failed."""
        codes = {code for row, code in zip(self.rows, self.exit_codes, strict=True) if row["status"] != "ok"}
        if not codes:
            return EXIT_OK
        return EXIT_UNCOSTED if codes == {EXIT_UNCOSTED} else EXIT_ERROR

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SUMMARY_SCHEMA, "models": len(self.rows), "ok": len(self.rows) - self.failed,
                "failed": self.failed, "rows": list(self.rows)}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: _cell(value) for key, value in row.items()})  # as the report CSVs write them
        return buffer.getvalue()


def run_batch(
    entries: Sequence[BatchEntry],
    out: Path,
    backend: Backend,
    *,
    resume: bool = False,
    shard_size: int | None = None,
    threads: int = 1,
    on_samples: Callable[[int], None] | None = None,
    on_model: Callable[[BatchEntry, str | None], None] | None = None,
    write: Callable[[Path, str], None] | None = None,
) -> BatchSummary:
    """Estimate every entry on `backend`, writing each result as soon as it is in, then the summary files.
    `write(path, text)` must write atomically (the CLI passes its write_atomic). Never raises for one model."""
    from .cli import write_atomic

    save = write or write_atomic
    jobs = [entry.job for entry in entries]
    stored: dict[int, dict[str, Any]] = {}
    if resume:
        for index, entry in enumerate(entries):
            data = load_result(result_path(out, entry.name), entry.job)
            if data is not None:
                stored[index] = data
    for index in stored:
        if on_samples is not None:
            on_samples(stored[index].get("samples") or 0)
        if on_model is not None:
            on_model(entries[index], None)
    finished: dict[int, tuple[dict[str, Any] | None, str | None, int]] = {
        index: (data, None, EXIT_OK) for index, data in stored.items()
    }
    outcome: JobOutcome
    for outcome in run_jobs(jobs, backend, shard_size=shard_size, threads=threads, on_samples=on_samples,
                            skip=stored.__contains__):
        entry = entries[outcome.index]
        error, code = outcome.error, outcome.exit_code
        if outcome.report is not None:
            data = {**outcome.report.to_dict(), "batch": fingerprint(entry.job)}
            text = json.dumps(data, indent=2) + "\n"
            try:
                save(result_path(out, entry.name), text)
                finished[outcome.index] = (json.loads(text), None, EXIT_OK)
            except NeuronopsError as err:  # its result cannot be written (a folder in its place): this model fails,
                error, code = str(err), err.exit_code  # the batch goes on
        else:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                result_path(out, entry.name).unlink()  # a stale result of an earlier run must not stay
        if error is not None:
            finished[outcome.index] = (None, error, code)
        if on_model is not None:
            on_model(entry, error)
    rows, codes = [], []
    for index, entry in enumerate(entries):
        data, error, code = finished[index]
        rows.append(_row(entry, out, data, error))
        codes.append(code)
    summary = BatchSummary(tuple(rows), resumed=len(stored), exit_codes=tuple(codes))
    save(out / "summary.json", json.dumps(summary.to_dict(), indent=2) + "\n")
    save(out / "summary.csv", summary.to_csv())
    return summary


def total_samples(entries: Iterable[BatchEntry]) -> int:
    """Samples the batch will replay, from the inputs files' headers (for the progress bar)."""
    return sum(peek_samples(entry.job.inputs) or 0 for entry in entries if entry.job.inputs)
