"""Recorded inputs: read `.npz` / `.npy` safely (never unpickled; `.npy` memory-mapped) and check them against the
model before any replay starts.

Layout is NeuroBench's: (batch, time, features…). `time_axis` says where time is in the file when it is elsewhere
(batch is then the first of the other axes); arrays are viewed (not copied) with time moved to axis 1.
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, require_file
from .limits import format_size

# What `estimate(inputs=…)` takes: a .npy/.npz path, one array (a model with one data input), or arrays by input name
InputsSource = str | os.PathLike | np.ndarray | Mapping[str, np.ndarray]


@dataclass(frozen=True)
class RecordedInputs:
    """Arrays by graph input name, each (samples, time, features…), possibly memory-mapped."""

    arrays: dict[str, np.ndarray]
    path: Path
    time_axis: int = 1  # where time was in the file's arrays (moved to axis 1 here)
    file_shape: tuple[int, ...] | None = None  # the first array's shape in the file (for error messages)
    unused: tuple[str, ...] = ()  # arrays of the file named after no data input of the model (not fed)

    @property
    def samples(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    @property
    def time_steps(self) -> int:
        return next(iter(self.arrays.values())).shape[1]


def release(array: np.ndarray) -> None:
    """Unmap the pages of a memory-mapped array that reading it brought in (they stay in the page cache): resident
    file pages count in the process's memory, so without this a replay's peak would grow with the file's size."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        if isinstance(base, np.memmap) and base.mode != "r":
            return  # writable or copy-on-write: dropping its pages could drop changes
        base = getattr(base, "base", None)
    if base is not None and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)




_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


def _unreadable(path: Path, err: BaseException) -> InputError:
    text = " ".join(str(err).split())[:200]
    if "pickle" in text.lower() or "object" in text.lower():
        return InputError(f"{path}: holds object (pickled) arrays, which are never loaded; save numeric arrays")
    return InputError(f"{path}: not a readable .npy/.npz file ({type(err).__name__}: {text})")


def _open(path: Path, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays in `path`, told apart by content (not by suffix): .npy memory-mapped, .npz read member by member."""
    require_file(path, InputError, "no such inputs file", "a .npz or .npy file")
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        # numpy warns on stderr about headers it reads by an old fallback (Python 2 files): not the user's concern
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if head.startswith(_NPY_MAGIC):
                return {"": np.load(path, mmap_mode="r", allow_pickle=False)}
            if head.startswith(_ZIP_MAGICS):
                return _read_npz(path, max_bytes)
    except InputError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # numpy and zipfile raise many types for a damaged file; all mean "unreadable"
        raise _unreadable(path, err) from None
    raise InputError(f"{path}: not a .npy or .npz file (write inputs with numpy.save or numpy.savez)")


def _read_npz(path: Path, max_bytes: int | None) -> dict[str, np.ndarray]:
    import zipfile  # imported here: only .npz inputs need it (start-up time)

    with zipfile.ZipFile(path) as archive:  # sizes first: a zip bomb or a huge archive is refused unread
        unpacked = sum(info.file_size for info in archive.infolist())
        for info in archive.infolist():  # and what each member's own header declares: numpy allocates that first
            declared = _declared_bytes(archive, info)
            if declared is not None and declared > info.file_size:
                raise InputError(f"{path}: member {info.filename!r} declares {format_size(declared)} of data but "
                                 f"holds {format_size(info.file_size)}: the file is damaged; write it again with "
                                 "numpy.savez")
    if max_bytes is not None and unpacked > max_bytes:
        raise InputError(
            f"{path}: its arrays take {format_size(unpacked)} once unpacked, more than --max-memory "
            f"{format_size(max_bytes)}; save them with numpy.save as .npy (memory-mapped) or raise --max-memory"
        )
    arrays: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            value = archive[key]
            if not isinstance(value, np.ndarray):  # a zip member that is not a .npy file comes back as bytes
                raise InputError(f"{path}: member {key!r} is not a numpy array (write inputs with numpy.savez)")
            arrays[key] = value
    return arrays


def _declared_bytes(archive, info) -> int | None:
    """The bytes a .npz member's .npy header says its array takes (None: no readable .npy header)."""
    from numpy.lib import format as npy_format

    if not info.filename.endswith(".npy"):
        return None
    with archive.open(info) as member:
        try:
            version = npy_format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(member)
            else:
                return None
        except ValueError:
            return None  # np.load says what is wrong with it
    count = 1
    for size in shape:
        count *= int(size)
    return count * dtype.itemsize


def _in_memory(source: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arrays handed over from Python, by name ("" for a single array), checked to be numpy arrays."""
    if isinstance(source, np.ndarray):
        return {"": source}
    found: dict[str, np.ndarray] = {}
    for name, value in source.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise InputError(f"inputs: {name!r} -> {type(value).__name__}; give arrays by input name as "
                             "{name: numpy array}")
        found[name] = value
    return found


def read_inputs(source: InputsSource, data_inputs: tuple[str, ...], time_axis: int = 1,
                max_bytes: int | None = None, static: Mapping[str, int] | None = None) -> RecordedInputs:
    """Match the arrays to the model's data inputs and put time on axis 1. `source` is a file (a `.npz` whose arrays
    would take more than `max_bytes` in memory is refused unread; a `.npy` is memory-mapped, so any size is fine) or
    arrays already in memory: one array, or a mapping from input name to array. `static`: inputs every step of an
    unrolled graph reads whole, by the graph's steps: their arrays have no time axis, and are seen as the same input
    at each step (a view, nothing copied)."""
    static = static or {}
    if isinstance(source, (np.ndarray, Mapping)):
        file_path = Path("<arrays>")
        found = _in_memory(source)
    elif isinstance(source, (str, os.PathLike)):
        file_path = Path(source)
        found = _open(file_path, max_bytes)
    else:
        raise InputError(f"inputs must be a .npy/.npz path, a numpy array or a dict of arrays by input name, not "
                         f"{type(source).__name__}")
    if not found:
        raise InputError(f"{file_path}: holds no arrays")
    if not data_inputs:
        raise InputError("the model has no data input to feed")
    unused: tuple[str, ...] = ()
    if set(data_inputs) <= set(found):
        arrays = {name: found[name] for name in data_inputs}
        unused = tuple(sorted(set(found) - set(data_inputs)))
    elif len(found) == 1 and len(data_inputs) == 1:
        arrays = {data_inputs[0]: next(iter(found.values()))}
    elif list(found) == [""]:  # one unnamed array (a .npy, or one array in memory) for several inputs
        names = ", ".join(map(repr, data_inputs))
        where = ("pass a dict of arrays by input name" if file_path.name == "<arrays>" else
                 "save an .npz with one array per input name (numpy.savez(path, **{name: array}))")
        raise InputError(f"{file_path}: holds one unnamed array, but the model has {len(data_inputs)} data inputs "
                         f"({names}); {where}")
    else:
        missing = sorted(set(data_inputs) - set(found))
        raise InputError(
            f"{file_path}: no array for model input(s) {', '.join(map(repr, missing))} "
            f"({'arrays given' if file_path.name == '<arrays>' else 'file has'} "
            f"{', '.join(map(repr, sorted(found))) or 'nothing'}); name arrays after the model's inputs, "
            "or, if it is a stepwise state the tool could not pair with its output by dataflow, name that output after "
            "it (X → X.next)"
        )
    checked: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise InputError(
                f"input {name!r}: dtype {array.dtype} is not a real number type; save bool, integer or float arrays"
            )
        if name in static and array.ndim >= 1:  # (batch, features…): the same input at every step
            array = np.broadcast_to(np.expand_dims(array, 1), (array.shape[0], static[name], *array.shape[1:]))
            if array.shape[0] == 0:
                raise InputError(f"input {name!r}: shape {array.shape} is empty (no samples)")
            checked[name] = array
            continue
        if array.ndim < 2:
            raise InputError(f"input {name!r}: shape {array.shape} has no time axis; expected (batch, time, features…)")
        axis = time_axis if time_axis >= 0 else array.ndim + time_axis
        if not 0 <= axis < array.ndim:
            raise InputError(f"input {name!r}: --time-axis {time_axis} does not exist in shape {array.shape}")
        if axis != 1:
            array = np.moveaxis(array, axis, 1)
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InputError(f"input {name!r}: shape {array.shape} is empty (no samples or no time steps)")
        checked[name] = array
    first_name, first = next(iter(checked.items()))
    for name, array in checked.items():
        if array.shape[:2] != first.shape[:2]:
            raise InputError(
                f"inputs {first_name!r} and {name!r} disagree on (samples, time): "
                f"{first.shape[:2]} vs {array.shape[:2]}"
            )
    return RecordedInputs(checked, file_path, time_axis, tuple(next(iter(arrays.values())).shape), unused)
