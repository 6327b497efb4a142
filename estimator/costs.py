"""Cost tables: operations per neuron update, by kind and reset, read from validated TOML data files.

The bundled tables live in `cost_tables/` (shipped inside the wheel as `estimator/cost_tables/`):
`neurobench.toml` (NeuroBench 2.3's numbers, unchanged) and `neuronops-extension.toml` (ours, for what NeuroBench
cannot cost). A user's table (`--cost-table FILE`) is laid over both. Lookups say which table a cost came from.

File format:
    [meta]                      # optional: name, source
    name = "my-chip"
    [costs.leaky]
    subtract = 4                # a whole number of operations ...
    [costs.leaky.zero]          # ... or a table with a total and an optional split into operation classes
    total = 4
    split = { multiply = 2, add = 1, compare = 1 }
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import CostTableError, require_file
from .kinds import RESETS, registered_kinds

BUNDLED_TABLES = ("neurobench.toml", "neuronops-extension.toml")


@dataclass(frozen=True)
class Cost:
    """Operations per neuron per update, and where that number came from."""

    total: int
    source: str  # the table's name
    split: dict[str, int] = field(default_factory=dict, compare=False)
    note: str = ""


@dataclass(frozen=True)
class CostTable:
    """A merged set of costs; later tables override earlier ones key by key."""

    entries: dict[tuple[str, str], Cost]
    sources: tuple[str, ...]  # each table's name, in the order they were laid over each other
    # each table's SHA-256 (hex, of the file's bytes), in the same order: a name alone cannot tell two files apart
    digests: tuple[str, ...] = ()

    def lookup(self, kind: str, reset: str) -> Cost | None:
        return self.entries.get((kind, reset))

    def overlay(self, other: CostTable) -> CostTable:
        return CostTable({**self.entries, **other.entries}, self.sources + other.sources, self.digests + other.digests)


def bundled_tables_dir() -> Path:
    """Where the bundled tables are: inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "cost_tables", here.parent / "cost_tables"):
        if (candidate / BUNDLED_TABLES[0]).is_file():
            return candidate
    raise CostTableError(f"bundled cost tables not found (looked in {here / 'cost_tables'})")


MAX_COST = 10**9  # operations per neuron update


def _whole_number(path: Path, key: str, value: object) -> int:
    if isinstance(value, bool):  # in the file's own spelling
        raise CostTableError(f"{path}: {key} = {str(value).lower()} is not a number")
    if not isinstance(value, int | float):
        raise CostTableError(f"{path}: {key} = {value!r} is not a number")
    if isinstance(value, float) and not value.is_integer():
        raise CostTableError(f"{path}: {key} = {value!r} is not a whole number of operations")
    if value < 0:
        raise CostTableError(f"{path}: {key} = {value!r} is negative")
    if value > MAX_COST:  # (the totals multiply it by neurons, steps and rates: keep them finite)
        raise CostTableError(f"{path}: {key} = {value!r} is more operations per update than any neuron needs "
                             f"(at most {MAX_COST:,})")
    return int(value)


def parse_table(path: Path, text: str, digest: str = "") -> CostTable:
    """Validate one table's text (whose file has SHA-256 `digest`); every error names the file and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise CostTableError(f"{path}: not valid TOML ({err})") from None
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise CostTableError(f"{path}: [meta] must be a table")
    name = str(meta.get("name", path.stem))
    unknown_top = set(data) - {"meta", "costs"}
    if unknown_top:
        raise CostTableError(f"{path}: unknown top-level key {sorted(unknown_top)[0]!r} (expected [meta] and [costs])")
    costs = data.get("costs")
    if not isinstance(costs, dict) or not costs:
        raise CostTableError(f"{path}: no [costs.<kind>] entries")
    known_kinds = {kind.name for kind in registered_kinds()}
    entries: dict[tuple[str, str], Cost] = {}
    for kind, resets in costs.items():
        if kind not in known_kinds:
            raise CostTableError(
                f"{path}: costs.{kind}: unknown neuron kind (known: {', '.join(sorted(known_kinds))})"
            )
        if not isinstance(resets, dict):
            raise CostTableError(f"{path}: costs.{kind} must be a table of resets")
        for reset, value in resets.items():
            key = f"costs.{kind}.{reset}"
            if reset not in RESETS:
                raise CostTableError(f"{path}: {key}: unknown reset (known: {', '.join(RESETS)})")
            if isinstance(value, dict):
                extra = set(value) - {"total", "split", "note"}
                if extra:
                    raise CostTableError(f"{path}: {key}: unknown field {sorted(extra)[0]!r}")
                if "total" not in value:
                    raise CostTableError(f"{path}: {key}: missing 'total'")
                total = _whole_number(path, f"{key}.total", value["total"])
                split_raw = value.get("split", {})
                if not isinstance(split_raw, dict):
                    raise CostTableError(f"{path}: {key}.split must be a table of operation classes")
                split = {op: _whole_number(path, f"{key}.split.{op}", n) for op, n in split_raw.items()}
                if split and sum(split.values()) != total:
                    raise CostTableError(
                        f"{path}: {key}.split adds up to {sum(split.values())}, but total is {total}"
                    )
                entries[(kind, reset)] = Cost(total, name, split, str(value.get("note", "")))
            else:
                entries[(kind, reset)] = Cost(_whole_number(path, key, value), name)
    return CostTable(entries, (name,), (digest,))


def read_table(path: str | Path) -> CostTable:
    table_path = Path(path)
    require_file(table_path, CostTableError, "no such cost table file", "a TOML cost table")
    try:
        data = table_path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CostTableError(f"{table_path}: cannot read ({err})") from None
    return parse_table(table_path, text, hashlib.sha256(data).hexdigest())


def default_table() -> CostTable:
    """NeuroBench's table with neuronops' extension beneath it (NeuroBench's values always win)."""
    folder = bundled_tables_dir()
    neurobench = read_table(folder / BUNDLED_TABLES[0])
    extension = read_table(folder / BUNDLED_TABLES[1])
    return extension.overlay(neurobench)


def load_costs(user_tables: list[str | Path] | tuple[str | Path, ...] = ()) -> CostTable:
    """The default table with each user table laid over it, in order."""
    table = default_table()
    bundled = dict(zip(table.sources, table.digests, strict=True))
    for path in user_tables:
        user = read_table(path)
        (name,), (digest,) = user.sources, user.digests
        if name in bundled and digest != bundled[name]:
            # An edited copy of a bundled table (its [meta] name kept, or its file name): its costs must not be
            # credited to NeuroBench. The bundled file itself, unchanged, keeps its name.
            user = _renamed(user, f"{name} (edited copy: {Path(path).name})")
        table = table.overlay(user)
    return table


def _renamed(table: CostTable, name: str) -> CostTable:
    entries = {key: replace(cost, source=name) for key, cost in table.entries.items()}
    return CostTable(entries, (name,), table.digests)
