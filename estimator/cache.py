"""The analysis cache: a second analysis of the same model skips loading, matching — and importing onnx.

A dense-only run (`estimate` without inputs, `layers`, `explain`) needs only the layers found: its entry is the JSON
alone (store_match), and it reads the JSON of any entry.

What a replay needs from the static analysis (`replay.ReplayPlan`: the match, the shapes and types of the tensors it
feeds and reads, the model's warnings, and the model with the replay's extra outputs) is stored per model file:
`<key>.json` and `<key>.onnx` in the cache folder, and `<key>.ort` — the same model in onnxruntime's own format,
optimised at the machine-independent basic level, saved by the first replay that ran it only a few times (an
unrolled export): loading it takes about half the time of the ONNX model. The key is the SHA-256 of the model
file's bytes together with the versions of everything that decides the analysis (this package's modules, onnx,
onnxruntime), so an edited model or a new neuronops, onnx or onnxruntime never reads an old entry. Nothing is
unpickled: an entry is JSON and model files that onnxruntime reads as it would read the model itself; the .onnx and
.ort are checked against the SHA-256 the JSON records before onnxruntime sees them, so a damaged file is a miss,
not other figures or an error blamed on the user's model.

Not cached: models with external data (their weights live in other files), models whose exposed copy would exceed
MAX_ENTRY_BYTES, and analyses made while kinds other than the built-in ones are registered (a recogniser is code:
its version cannot be keyed). Entries are written atomically (a reader sees a whole entry or none); an entry that
cannot be read is a miss and is written again. When the folder grows past MAX_TOTAL_BYTES the least recently used
entries are removed.

Folder: $NEURONOPS_CACHE_DIR, else $XDG_CACHE_HOME/neuronops, else ~/.cache/neuronops. Off: `--no-cache`, or
NEURONOPS_CACHE=0.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from .layers import MatchResult, match_from_json, match_to_json
from .replay import ReplayPlan, TensorInfo

SCHEMA = "neuronops.analysis-cache/1"
SUFFIXES = (".json", ".onnx", ".ort")  # removed in this order: a reader never finds a JSON whose files are gone
MAX_ENTRY_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 2 * 2**30
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Slot:
    """Where a model's entry lives (or will): the replay of a miss saves its .ort here (see ort_temp_path)."""

    folder: Path
    key: str


@dataclass(frozen=True)
class CachedAnalysis:
    """A cache hit: the layers found and the warnings loading gave, and for a replay the plan (its session_model the
    entry's .onnx bytes, checked)."""

    match: MatchResult
    warnings: tuple[str, ...]
    plan: ReplayPlan | None = None


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is switched off (NEURONOPS_CACHE=0/off/no/false)."""
    if os.environ.get("NEURONOPS_CACHE", "").strip().lower() in ("0", "off", "no", "false"):
        return None
    explicit = os.environ.get("NEURONOPS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neuronops"


def _versions() -> str:
    """What decides an analysis besides the model: this package's code, onnx's (shape inference, checker) and
    onnxruntime's (the .ort format). Sizes and modification times, not imports: onnx is exactly what a hit must not
    import."""
    stamps = [SCHEMA]
    files = sorted(_HERE.glob("*.py"))
    for package, marks in (("onnx", ("version.py", "onnx_cpp2py_export*")),
                           ("onnxruntime", ("capi/version_info.py", "capi/onnxruntime_pybind11_state*"))):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            where = Path(next(iter(spec.submodule_search_locations)))
            files += [found for mark in marks for found in sorted(where.glob(mark))]
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            continue
        stamps.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "\n".join(stamps)


def model_key(path: Path) -> str:
    """The entry key of a model file (reads the whole file; hashing is far cheaper than parsing it)."""
    digest = hashlib.sha256(_versions().encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def slot_for(model: Path) -> Slot | None:
    """Where this model file's entry lives; None when the cache is off, or the file is not one regular readable file
    (load_model then says what is wrong with it)."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        return Slot(folder, model_key(model)) if model.is_file() else None
    except (OSError, ValueError):  # unreadable, a name too long, a NUL byte in it…
        return None


def _touch(path: Path) -> None:
    try:
        os.utime(path)  # the recently used survive pruning
    except OSError:
        pass


def lookup(slot: Slot, for_replay: bool = True) -> CachedAnalysis | None:
    """The slot's entry, or None (absent, incomplete or unreadable entries are misses). Without `for_replay` the
    JSON alone answers (a dense-only run needs the layers, not the model); a replay needs a whole entry, and an entry
    a dense-only run wrote (no model files: store_match) is a miss for it."""
    folder, key = slot.folder, slot.key
    meta = folder / f"{key}.json"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            return None
        match = match_from_json(data["match"])
        warnings = tuple(str(w) for w in data["warnings"])
        plan = _plan_of(folder, key, data, match) if for_replay else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if for_replay and plan is None:
        return None
    _touch(meta)
    return CachedAnalysis(match, warnings, plan)


def _plan_of(folder: Path, key: str, data: dict[str, Any], match: MatchResult) -> ReplayPlan | None:
    """The replay plan of an entry whose JSON is `data`: None when its model files are missing or do not match the
    SHA-256 the JSON records (lookup's exceptions mean the same)."""
    model = folder / f"{key}.onnx"
    if not model.is_file() or model.stat().st_size != data["session_bytes"]:
        return None
    session_model = model.read_bytes()
    if hashlib.sha256(session_model).hexdigest() != data["session_sha256"]:
        return None
    ort_model = None
    if data.get("ort_sha256") is not None:
        ort_model = (folder / f"{key}.ort").read_bytes()
        if hashlib.sha256(ort_model).hexdigest() != data["ort_sha256"]:
            return None
    tensors = {name: TensorInfo(tuple(shape) if shape is not None else None, elem)
               for name, (shape, elem) in data["tensors"].items()}
    return ReplayPlan(match, tensors, int(data["other_bytes_per_sample"]), int(data["model_size"]), session_model,
                      ort_model=ort_model)


def store(slot: Slot, plan: ReplayPlan, warnings: tuple[str, ...]) -> bool:
    """Write the slot's entry (model first, then the JSON that makes it visible). False when it is not stored: too
    big, or the folder cannot be written (the cache is a help, never a reason to fail)."""
    folder, key = slot.folder, slot.key
    model = plan.session_model
    if len(model) > MAX_ENTRY_BYTES:
        return False
    data: dict[str, Any] = {
        "schema": SCHEMA,
        "match": match_to_json(plan.match),
        "tensors": {name: [list(info.shape) if info.shape is not None else None, info.elem]
                    for name, info in plan.tensors.items()},
        "other_bytes_per_sample": plan.other_bytes_per_sample,
        "model_size": plan.model_size,
        "session_bytes": len(model),
        "session_sha256": hashlib.sha256(model).hexdigest(),
        "warnings": list(warnings),
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key}.ort").unlink(missing_ok=True)  # of an older, damaged entry: the new JSON does not name it
        _atomic_write(folder / f"{key}.onnx", model)
        _atomic_write(folder / f"{key}.json", json.dumps(data).encode())
        _prune(folder, MAX_TOTAL_BYTES, keep=key)
    except (OSError, ValueError, TypeError):
        return False
    return True


def store_match(slot: Slot, match: MatchResult, warnings: tuple[str, ...]) -> bool:
    """A dense-only run's entry: the layers found and the warnings, no model files (serialising the model for
    onnxruntime would cost a dense-only run more than it saves it). A later replay misses it and writes the whole
    entry. False when it is not stored."""
    folder, key = slot.folder, slot.key
    data = {"schema": SCHEMA, "match": match_to_json(match), "warnings": list(warnings)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for suffix in (".ort", ".onnx"):  # of an older entry whose JSON could not be read: nothing orphaned
            (folder / f"{key}{suffix}").unlink(missing_ok=True)
        _atomic_write(folder / f"{key}.json", json.dumps(data).encode())
        _prune(folder, MAX_TOTAL_BYTES, keep=key)
    except (OSError, ValueError, TypeError):
        return False
    return True


def ort_temp_path(slot: Slot) -> str | None:
    """A fresh file name for the .ort a replay is about to save (None when the folder cannot be made)."""
    try:
        slot.folder.mkdir(parents=True, exist_ok=True)
        import tempfile  # imported here: only writes need it (start-up time)

        handle, tmp = tempfile.mkstemp(dir=slot.folder, prefix=f".{slot.key}.ort.", suffix=".tmp")
        os.close(handle)
    except OSError:
        return None
    return tmp


def store_ort(slot: Slot, saved: str) -> bool:
    """Add the .ort a replay saved at `saved` to the slot's entry (recorded in its JSON); False when the entry is
    gone or the file is not there. The temporary file is moved or removed either way."""
    meta = slot.folder / f"{slot.key}.json"
    try:
        payload = Path(saved).read_bytes()
        if not payload or len(payload) > MAX_ENTRY_BYTES:  # the usual case of a replay that ran optimised: no copy
            return False
        data = json.loads(meta.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            return False
        os.replace(saved, slot.folder / f"{slot.key}.ort")
        data["ort_sha256"] = hashlib.sha256(payload).hexdigest()
        _atomic_write(meta, json.dumps(data).encode())
    except (OSError, ValueError, TypeError, AttributeError):
        return False
    finally:
        Path(saved).unlink(missing_ok=True)
    return True


def _atomic_write(path: Path, payload: bytes) -> None:
    import tempfile  # imported here: only writes need it (start-up time)

    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entries(folder: Path) -> list[tuple[str, int, float]]:
    """(key, bytes, last used) of every entry in the folder, least recently used first. A half-written entry (an
    .onnx whose JSON never came: a full disk, a killed process) counts too, so that pruning and --clear see it."""
    found: dict[str, tuple[int, float | None]] = {}
    for path in chain.from_iterable(folder.glob(f"*{suffix}") for suffix in SUFFIXES):
        try:
            stat = path.stat()
        except OSError:
            continue
        size, used = found.get(path.stem, (0, None))
        # last used: the JSON's time (a hit touches it); another file's only for an entry without JSON
        found[path.stem] = (size + stat.st_size, stat.st_mtime if used is None or path.suffix == ".json" else used)
    return sorted(((key, size, used or 0.0) for key, (size, used) in found.items()), key=lambda entry: entry[2])


def remove(folder: Path, key: str) -> None:
    for suffix in SUFFIXES:
        (folder / f"{key}{suffix}").unlink(missing_ok=True)


def _prune(folder: Path, limit: int, keep: str) -> None:
    found = entries(folder)
    total = sum(size for _, size, _ in found)
    for key, size, _ in found:
        if total <= limit:
            break
        if key != keep:  # never the entry just written, whatever the clocks say
            remove(folder, key)
            total -= size


def clear(folder: Path) -> int:
    """Remove every entry (and stray temporary files); the number of entries removed."""
    found = entries(folder) if folder.is_dir() else []
    for key, _, _ in found:
        remove(folder, key)
    if folder.is_dir():
        for stray in folder.glob(".*.tmp"):
            stray.unlink(missing_ok=True)
    return len(found)
