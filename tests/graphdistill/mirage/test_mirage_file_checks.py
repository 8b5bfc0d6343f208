"""A distilled-set file a user hands us (``graphdistill mirage train FILE``) that is damaged or crafted: every
count, id, dtype name and per-pattern table is checked against what the file holds before anything is
decoded, so a bad file is one clear ``ValueError`` (one line and exit code 2 from the CLI), never a crash
deep in decoding or training, a silently wrong set, or an allocation the file's counts ask for."""
import copy
import sys

import pytest
import torch

from graphdistill.mirage.distill import DistillConfig, distill
from graphdistill.mirage.distilled import DistilledDataset
from graphdistill.mirage.mining import MiningConfig

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from test_mirage_distilled import save_v1, splits  # noqa: E402

DAMAGED = "is not a valid Mirage distilled data set"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A depth-2 set of the toy molecules (patterns of 1-2 trees, some frequent in both classes) and its
    v2 file's contents."""
    distilled = distill(splits(), DistillConfig(depth=2, sweep=None, mining=MiningConfig(min_support=0.25, max_pattern_size=2)))
    path = tmp_path_factory.mktemp("mirage") / "good.pt"
    distilled.save(path)
    return distilled, torch.load(path, weights_only=True)


def _set(key, value):
    def mutate(state):
        state["tensors"][key] = value(state["tensors"][key]) if callable(value) else value
    return mutate


def _header(key, value):
    return lambda state: state.__setitem__(key, value)


def _first(key, value, dtype=torch.int64):
    """``tensors[key]`` in ``dtype`` with its first value replaced."""
    def change(t):
        t = t.to(dtype)
        t[0] = value
        return t
    return _set(key, change)


def _pop(key):
    return lambda state: state["tensors"].pop(key)


def _double_entry(state):
    """The first pattern's single entry given twice (same class): its trees would be decoded twice."""
    t = state["tensors"]
    first = int(torch.nonzero(t["pattern_entries"] == 1)[0])
    entries = t["pattern_entries"].long()
    entries[first] = 2
    at = int(entries[:first].sum())
    t["pattern_entries"] = entries
    for key in ("entry_class", "entry_frequency", "entry_mass"):
        t[key] = torch.cat([t[key][:at + 1], t[key][at:]])


BAD_FILES = {
    # counts: negative, past what the file holds, or overflowing int64 when summed
    "negative pattern size": (_first("pattern_size", -1), "'pattern_size' holds values outside"),
    "pattern sizes past the stored trees": (_set("pattern_size", lambda t: t.long() + 1), "'pattern_size' adds up to"),
    "entries count of 2**40": (_first("pattern_entries", 2**40), "'pattern_entries' holds values outside"),
    "entries counts overflowing int64": (_set("pattern_entries", lambda t: torch.full_like(t.long(), 2**62)),
                                         "'pattern_entries' holds values outside"),
    "entries past the stored entries": (_set("pattern_entries", lambda t: t.long() + 1), "'pattern_entries' adds up to"),
    "negative child count": (_first("level2.num_children", -3), "'level2.num_children' holds values outside"),
    "child counts past the stored children": (_first("level1.num_children", 10**6), "'level1.num_children' holds values outside"),
    "a pattern's entry given twice": (_double_entry, "two entries for one class"),
    # ids outside the table they index
    "tree id past the top level": (_first("pattern_trees", 10**4), "'pattern_trees' holds values outside"),
    "child id past the level below": (_first("level2.child", 10**4), "'level2.child' holds values outside"),
    "node label past the feature table": (_first("level1.child", 10**4), "'level1.child' holds values outside"),
    "root label past the feature table": (_first("level2.label", 10**4), "'level2.label' holds values outside"),
    "edge label past the feature table": (_first("level1.child_edge_label", 10**4), "'level1.child_edge_label' holds"),
    "class past num_classes": (_first("entry_class", 2), "'entry_class' holds values outside"),
    "negative class": (_first("entry_class", -1), "'entry_class' holds values outside"),
    "feature category past its cardinality": (_set("node_features", lambda t: t + 100), "node_features[:, 0]"),
    # wrong dtypes and shapes
    "float counts": (_set("pattern_entries", lambda t: t.float()), "'pattern_entries' must be a 1-D integer tensor"),
    "bool ids": (_set("pattern_trees", lambda t: t.bool()), "'pattern_trees' must be a 1-D integer tensor"),
    "2-D counts": (_set("pattern_size", lambda t: t[None]), "'pattern_size' must be a 1-D integer tensor"),
    "a count that is not a tensor": (_set("pattern_size", 3), "'pattern_size' must be a tensor, got int"),
    "NaN readout mass": (_set("entry_mass", lambda t: t * float("nan")), "masses must be finite"),
    "negative readout mass": (_set("entry_mass", lambda t: -t), "masses must be finite floats >= 0"),
    "integer readout mass": (_set("entry_mass", lambda t: t.long()), "masses must be finite floats"),
    "one frequency short": (_set("entry_frequency", lambda t: t[1:]), "one row each per item"),
    "one mass short": (_set("entry_mass", lambda t: t[1:]), "one row each per item"),
    "feature table of another width": (_set("node_features", lambda t: t[:, 1:]), "node_features must be"),
    "dtype name of a torch function": (lambda s: s["dtypes"].__setitem__("node_features", "load"), "dtypes must name"),
    "dtype name torch lacks": (lambda s: s["dtypes"].__setitem__("node_features", "nope"), "dtypes must name"),
    # missing parts and header fields of the wrong type
    "a level missing": (_pop("level2.child"), "tensor 'level2.child' is missing"),
    "the entries' classes missing": (_pop("entry_class"), "tensor 'entry_class' is missing"),
    "the feature table missing": (_pop("node_features"), "tensor 'node_features' is missing"),
    "no tensors": (lambda s: s.pop("tensors"), "tensors must be a dict"),
    "depth as a string": (_header("depth", "2"), "depth must be an int in [1, "),
    "original bytes past int64": (_header("original_nbytes", 10**400), "original_nbytes must be an int in [0, "),
    "compact bytes negative": (_header("original_compact_nbytes", -1), "original_compact_nbytes must be an int in [0, "),
    "compact bytes as a float": (_header("original_compact_nbytes", 5.0), "original_compact_nbytes must be an int"),
    "depth past the stored levels": (_header("depth", 3), "tensor 'level3.label' is missing"),
    "zero classes": (_header("num_classes", 0), "num_classes must be an int in [1, "),
    "meta not a dict": (_header("meta", 5), "meta must be a dict"),
    "class sizes of another class count": (_header("num_classes", 3), "meta.class_sizes must list 3"),
    "unknown feature-spec field": (_header("feature_spec", {"width": 9, "cardinalities": None, "code": 1}), "feature_spec must be"),
    "negative cardinality": (_header("feature_spec", {"width": 9, "cardinalities": [-1] * 9}), "cardinalities must be"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_damaged_v2_file_is_one_clear_error(saved, tmp_path, name):
    _, state = saved
    mutate, message = BAD_FILES[name]
    state = copy.deepcopy(state)
    mutate(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=DAMAGED) as raised:
        DistilledDataset.load(tmp_path / "bad.pt")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_checked_file_still_loads_and_trains(saved, tmp_path):
    """The checks refuse nothing the writer writes (both formats), and the loaded set decodes to graphs."""
    distilled, state = saved
    torch.save(state, tmp_path / "v2.pt")
    save_v1(distilled, tmp_path / "v1.pt")
    for path in (tmp_path / "v2.pt", tmp_path / "v1.pt"):
        graphs, weights = DistilledDataset.load(path).to_graphs()
        assert len(graphs) == distilled.num_patterns and bool((weights > 0).all())


@pytest.mark.parametrize("name,mutate,message", [
    ("ptr not ending at the stored trees", lambda t: t["pattern_ptr"].__setitem__(-1, t["pattern_ptr"][-1] + 5), "'pattern_ptr' must be"),
    ("decreasing ptr", lambda t: t["pattern_ptr"].__setitem__(1, -1), "'pattern_ptr' must be"),
    ("level ptr not starting at 0", lambda t: t["level1.ptr"].__setitem__(0, 1), "'level1.ptr' must be"),
    ("child id past the level below", lambda t: t["level2.child"].__setitem__(0, 10**4), "'level2.child' holds values"),
    ("float class", lambda t: t.__setitem__("pattern_class", t["pattern_class"].float()), "'pattern_class' must be a 1-D integer"),
])
def test_damaged_v1_file_is_one_clear_error(saved, tmp_path, name, mutate, message):
    distilled, _ = saved
    save_v1(distilled, tmp_path / "v1.pt")
    state = torch.load(tmp_path / "v1.pt", weights_only=True)
    mutate(state["tensors"])
    torch.save(state, tmp_path / "v1.pt")
    with pytest.raises(ValueError, match=DAMAGED) as raised:
        DistilledDataset.load(tmp_path / "v1.pt")
    assert message in str(raised.value)


def test_cli_refuses_a_damaged_file_in_one_line(saved, tmp_path, monkeypatch, capsys):
    from graphdistill.cli import console_main

    _, state = saved
    state = copy.deepcopy(state)
    _first("pattern_entries", 2**40)(state)
    torch.save(state, tmp_path / "bad.pt")
    monkeypatch.setattr(sys, "argv", ["graphdistill", "mirage", "train", str(tmp_path / "bad.pt")])
    assert console_main() == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and DAMAGED in error[0], error
