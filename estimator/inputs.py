"""Recorded inputs: read `.npz` / `.npy` safely (never unpickled; `.npy` memory-mapped) and check them against the
model before any replay starts.

Layout is NeuroBench's: (batch, time, features…). `time_axis` says where time is in the file when it is elsewhere
(batch is then the first of the other axes); arrays are viewed (not copied) with time moved to axis 1.
"""

from __future__ import annotations

import mmap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class RecordedInputs:
    """Arrays by graph input name, each (samples, time, features…), possibly memory-mapped."""

    arrays: dict[str, np.ndarray]
    path: Path

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


def _open(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise InputError(f"{path}: no such inputs file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a .npz or .npy file")
    try:
        if path.suffix == ".npy":
            return {"": np.load(path, mmap_mode="r", allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                return {"": np.asarray(archive)}
            return {key: archive[key] for key in archive.files}
    except ValueError as err:
        if "pickle" in str(err).lower() or "object" in str(err).lower():
            raise InputError(
                f"{path}: holds object (pickled) arrays, which are never loaded; save numeric arrays"
            ) from None
        raise InputError(f"{path}: not a readable .npy/.npz file ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy/.npz file ({type(err).__name__}: {err})") from None


def read_inputs(path: str | Path, data_inputs: tuple[str, ...], time_axis: int = 1) -> RecordedInputs:
    """Match the file's arrays to the model's data inputs and put time on axis 1."""
    file_path = Path(path)
    found = _open(file_path)
    if not found:
        raise InputError(f"{file_path}: holds no arrays")
    if not data_inputs:
        raise InputError("the model has no data input to feed")
    if set(data_inputs) <= set(found):
        arrays = {name: found[name] for name in data_inputs}
    elif len(found) == 1 and len(data_inputs) == 1:
        arrays = {data_inputs[0]: next(iter(found.values()))}
    else:
        missing = sorted(set(data_inputs) - set(found))
        raise InputError(
            f"{file_path}: no array for model input(s) {', '.join(map(repr, missing))} "
            f"(file has {', '.join(map(repr, sorted(found))) or 'nothing'}; name arrays after the model's inputs)"
        )
    checked: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if array.dtype == object or array.dtype.kind not in "biuf":
            raise InputError(f"input {name!r}: dtype {array.dtype} is not numeric")
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
    return RecordedInputs(checked, file_path)
