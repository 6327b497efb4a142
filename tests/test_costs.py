"""Cost tables: NeuroBench's numbers bundled, our extension beneath them, user tables over both, errors naming the
file and the key."""

from __future__ import annotations

import hashlib

import pytest

from estimator import CostTableError
from estimator.costs import bundled_tables_dir, default_table, load_costs, read_table

NEUROBENCH = {("leaky", "subtract"): 4, ("leaky", "zero"): 4, ("synaptic", "subtract"): 6, ("synaptic", "zero"): 8,
              ("lapicque", "subtract"): 11, ("lapicque", "zero"): 11, ("alpha", "subtract"): 18, ("alpha", "zero"): 24}


def test_bundled_table_is_neurobench_and_ships_with_the_package():
    table = default_table()
    for key, cost in NEUROBENCH.items():
        assert table.lookup(*key).total == cost
        assert table.lookup(*key).source == "neurobench"
    assert (bundled_tables_dir() / "neurobench.toml").is_file()


def test_extension_covers_what_neurobench_lacks_and_is_marked_ours():
    table = default_table()
    for kind in ("leaky", "synaptic", "lapicque", "alpha", "rleaky", "rsynaptic"):
        cost = table.lookup(kind, "none")
        assert cost is not None and cost.source == "neuronops-extension"
    assert table.lookup("rleaky", "subtract").total == 5
    for key, cost in ((k, table.lookup(*k)) for k in [("leaky", "none"), ("rleaky", "subtract")]):
        assert sum(cost.split.values()) == cost.total, key


def test_user_table_overrides_key_by_key(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('[meta]\nname = "chip"\n[costs.leaky]\nsubtract = 9\n'
                    '[costs.synaptic.zero]\ntotal = 3\nsplit = { multiply = 1, add = 2 }\n')
    table = load_costs([path])
    assert table.lookup("leaky", "subtract").total == 9 and table.lookup("leaky", "subtract").source == "chip"
    assert table.lookup("leaky", "zero").total == 4  # untouched: NeuroBench's
    assert table.lookup("synaptic", "zero").split == {"multiply": 1, "add": 2}


def test_each_table_is_recorded_with_its_file_digest(tmp_path):
    """A name says little (two files may both be called "chip"): each table's SHA-256 is kept, in overlay order."""
    path = tmp_path / "chip.toml"
    path.write_bytes(b'[meta]\r\nname = "chip"\r\n[costs.leaky]\r\nsubtract = 9\r\n')  # the bytes, not the text
    table = load_costs([path])
    assert table.sources == ("neuronops-extension", "neurobench", "chip")
    folder = bundled_tables_dir()
    assert table.digests == tuple(hashlib.sha256(file.read_bytes()).hexdigest() for file in
                                  (folder / "neuronops-extension.toml", folder / "neurobench.toml", path))
    path.write_bytes(path.read_bytes() + b"# edited\n")
    assert load_costs([path]).digests[2] != table.digests[2]


def test_an_edited_copy_of_a_bundled_table_is_not_credited_to_neurobench(tmp_path):
    """A copy of neurobench.toml with one cost changed keeps `name = "neurobench"`: its costs are the user's, and the
    report's "not from NeuroBench's table" note must see it. The bundled file itself, unchanged, keeps its name."""
    bundled = bundled_tables_dir() / "neurobench.toml"
    edited = tmp_path / "my-copy.toml"
    edited.write_text(bundled.read_text().replace("subtract = 4", "subtract = 6"))
    table = load_costs([edited])
    cost = table.lookup("leaky", "subtract")
    assert cost.total == 6 and cost.source == "neurobench (edited copy: my-copy.toml)"
    assert table.sources[-1] == cost.source
    nameless = tmp_path / "neurobench.toml"  # no [meta]: named by its file, the same name
    nameless.write_text("[costs.leaky]\nzero = 7\n")
    assert load_costs([nameless]).lookup("leaky", "zero").source == "neurobench (edited copy: neurobench.toml)"
    unchanged = load_costs([bundled])
    assert unchanged.lookup("leaky", "subtract").source == "neurobench" and unchanged.sources[-1] == "neurobench"


@pytest.mark.parametrize(("text", "message"), [
    ("[costs.leaky\nsubtract = 4", "not valid TOML"),
    ("[costs.leaky]\nsubtract = -1", "costs.leaky.subtract = -1 is negative"),
    ("[costs.leaky]\nsubtract = 2.5", "costs.leaky.subtract = 2.5 is not a whole number of operations"),
    ('[costs.leaky]\nsubtract = "four"', "costs.leaky.subtract = 'four' is not a number"),
    ("[costs.leaky]\nsubtract = true", "costs.leaky.subtract = true is not a number"),
    ("[costs.leakyy]\nsubtract = 4", "costs.leakyy: unknown neuron kind"),
    ("[costs.leaky]\nsubstract = 4", "costs.leaky.substract: unknown reset (known: subtract, zero, none, value)"),
    ("[costs.leaky.zero]\nsplit = { add = 1 }", "costs.leaky.zero: missing 'total'"),
    ("[costs.leaky.zero]\ntotal = 4\nsplit = { add = 1 }", "costs.leaky.zero.split adds up to 1, but total is 4"),
    ("[meta]\nname = 'x'", "no [costs.<kind>] entries"),
    ("[costs]\nleaky = 4", "costs.leaky must be a table of resets"),
    ("[cost.leaky]\nsubtract = 4", "unknown top-level key 'cost'"),
])
def test_malformed_tables_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(CostTableError) as err:
        read_table(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_missing_table_file(tmp_path):
    with pytest.raises(CostTableError, match="no such cost table file"):
        load_costs([tmp_path / "absent.toml"])
