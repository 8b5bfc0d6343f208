r"""The distilled data set: per class, frequent computation-tree sets with their frequencies, one file.

Stored (all in one ``torch.save`` file, written atomically; every integer tensor in the smallest
dtype that holds its values, uint8 / int16 / int32 / int64, and CSR offsets as counts):

- the decoding tables of only the trees the patterns use, level by level (a subtree shared by many
  trees is stored once), with dense ids;
- every distinct pattern once: ``pattern_size`` / ``pattern_trees`` (its top-level tree ids; a tree
  repeats in multiset mode) and ``pattern_entries``, the number of classes it is frequent in; then per
  (pattern, class) entry ``entry_class``, ``entry_frequency`` (support count in that class) and
  ``entry_mass`` (readout mass in that class, the sampling weight); for multi-task sets
  (molpcba-style) also ``entry_task``: the pattern is frequent in class ``entry_class`` of that task.
  A tree frequent in two classes is stored once with two (class, frequency, mass) entries;
- the representative node / edge feature row of every label the trees use, and the feature spec
  the GNN encoder needs.

In memory (and for training) the set is a list of (pattern, class) entries: ``pattern_ptr`` /
``pattern_trees`` / ``pattern_class`` / ``pattern_frequency`` / ``pattern_mass`` per entry, in the order
the file stores them (grouped by pattern). Files of the former format (``mirage-distilled-v1``: one
int32 row per entry, a tree repeated for every class) still load.

A pattern becomes one training graph (:meth:`DistilledDataset.to_graphs`): the disjoint union of its
trees, unrolled with child -> parent edges, with ``root_mask`` marking the roots the readout pools.
The trainer samples pattern :math:`p` of class :math:`c` with probability

.. math:: P(p) = \pi_c \, \frac{f_p}{\sum_{q \in c} f_q} \quad\text{(class prior, default)}
    \qquad\text{or}\qquad P(p) = \frac{f_p}{\sum_q f_q} \quad\text{(raw frequency)},

with :math:`f_p` its readout mass ``pattern_mass`` (the share of the class's nodes its trees root,
:func:`~graphdistill.mirage.distill.pattern_readout_mass`; files without it: its support count) and
:math:`\pi_c` the share of class :math:`c` among the training graphs. Raw frequencies (the paper's choice) give a class with more diverse graphs, hence more
patterns, more sampling mass than its share of the data (74% instead of 41% for the low-solubility
class), which shifts the decision threshold; within a class both weightings are the same.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch_geometric.data import Data

from distillcore.serialization import load_state, save_atomic

from .models import FeatureSpec
from .trees import LevelTable, csr_gather, unroll_trees

FORMAT = "mirage-distilled-v2"
FORMAT_V1 = "mirage-distilled-v1"  # one row per (pattern, class) entry, int32 / int64 tensors: still read


def smallest_int(values: torch.Tensor) -> torch.Tensor:
    """``values`` in the smallest of uint8 / int16 / int32 / int64 that holds all of them (floats unchanged).

    Args:
        values: any tensor; integer ones are converted, floating and bool ones returned as they are.

    Shapes:
        ``values`` ``[*]`` -> ``[*]``.
    """
    if values.is_floating_point() or values.dtype == torch.bool:
        return values
    low, high = (int(values.min()), int(values.max())) if values.numel() else (0, 0)
    for dtype in (torch.uint8, torch.int16, torch.int32):
        info = torch.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return values.to(dtype)
    return values.to(torch.int64)


def counts_to_ptr(counts: torch.Tensor) -> torch.Tensor:
    """[n + 1] int32 CSR offsets of ``counts`` [n].

    Args:
        counts: non-negative integer counts (any integer dtype) adding up to less than 2**31.

    Shapes:
        ``counts`` ``[n]`` -> ``[n + 1]`` int32.

    Raises:
        ValueError: the counts add up to 2**31 or more (the offsets would wrap).
    """
    ends = torch.cumsum(counts.long(), 0)
    if ends.numel() and int(ends[-1]) >= 2**31:
        raise ValueError(f"{int(ends[-1])} entries: more than the 2**31 - 1 an int32 offset can address")
    ptr = torch.zeros(counts.numel() + 1, dtype=torch.int32)
    ptr[1:] = ends
    return ptr


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def graphs_nbytes(graphs: list[Data], compact: bool = False) -> int:
    """Bytes of the tensors of PyG graphs (x, edge_index, edge_attr, y): the data set's payload.

    Args:
        compact: count every integer tensor of each graph in its smallest dtype (:func:`smallest_int`), as
            the distilled file stores its own; otherwise in the dtype PyG holds (int64 for molecules).
    """
    total = 0
    for g in graphs:
        for key in ("x", "edge_index", "edge_attr", "y"):
            value = getattr(g, key, None)
            if isinstance(value, torch.Tensor):
                value = smallest_int(value) if compact else value
                total += value.numel() * value.element_size()
    return total


# dtypes a file may name for its feature tables (the name is never looked up in torch as given)
FEATURE_DTYPES = {name: getattr(torch, name)
                  for name in ("uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64")}


def _damaged(path: Path, problem: str) -> ValueError:
    return ValueError(f"{path} is not a valid Mirage distilled data set: {problem}")


def _int_field(state: dict, key: str, low: int, path: Path, high: int = 2**63 - 1) -> int:
    """``state[key]``, an int in ``[low, high]`` (the default bound: what int64 holds, so ratios and sums of it
    stay finite)."""
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an int of {len(str(value))} digits"
        raise _damaged(path, f"{key} must be an int in [{low}, {high}], got {shown}")
    return value


def _check_header(state: dict, path: Path) -> None:
    """The file's plain-data fields: types and ranges, before any tensor is decoded."""
    for key, low in (("depth", 1), ("num_classes", 1), ("original_nbytes", 0)):
        _int_field(state, key, low, path)
    if state.get("original_compact_nbytes") is not None:  # absent in files written before it was recorded
        _int_field(state, "original_compact_nbytes", 0, path)
    for key in ("meta", "tensors"):
        if not isinstance(state.get(key), dict):
            raise _damaged(path, f"{key} must be a dict, got {type(state.get(key)).__name__}")
    spec = state.get("feature_spec")
    if not isinstance(spec, dict) or set(spec) != {f.name for f in fields(FeatureSpec)}:
        raise _damaged(path, f"feature_spec must be a dict of {[f.name for f in fields(FeatureSpec)]}, got {spec!r}")
    width = _int_field(spec, "width", 1, path)
    cardinalities = spec["cardinalities"]
    if cardinalities is not None and (not isinstance(cardinalities, list) or len(cardinalities) != width or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in cardinalities)):
        raise _damaged(path, f"feature_spec.cardinalities must be None or {width} ints >= 1")
    meta = state["meta"]
    num_tasks = _int_field({"num_tasks": meta.get("num_tasks", 1)}, "num_tasks", 1, path)
    sizes = meta.get("class_sizes")
    if sizes is not None and (not isinstance(sizes, list) or len(sizes) != num_tasks * state["num_classes"] or any(
            isinstance(c, bool) or not isinstance(c, (int, float)) or not c >= 0 for c in sizes) or not sum(sizes) > 0):
        raise _damaged(path, f"meta.class_sizes must list {num_tasks * state['num_classes']} graph counts >= 0 "
                             "(num_tasks x num_classes), not all 0")
    for key, value in state["tensors"].items():
        if not isinstance(value, torch.Tensor):
            raise _damaged(path, f"{key!r} must be a tensor, got {type(value).__name__}")
    if "node_features" not in state["tensors"]:
        raise _damaged(path, "tensor 'node_features' is missing")


def _ints(tensors: dict, key: str, path: Path, *, ndim: int = 1, optional: bool = False) -> torch.Tensor | None:
    """``tensors[key]``, which must be an integer tensor of ``ndim`` dimensions."""
    value = tensors.get(key)
    if value is None:
        if optional:
            return None
        raise _damaged(path, f"tensor {key!r} is missing")
    if value.dim() != ndim or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise _damaged(path, f"{key!r} must be a {ndim}-D integer tensor, got {value.dtype} {list(value.shape)}")
    return value


def _within(values: torch.Tensor, key: str, low: int, high: int, path: Path) -> None:
    """Every value of ``values`` in ``[low, high)``."""
    if values.numel() and (int(values.min()) < low or int(values.max()) >= high):
        raise _damaged(path, f"{key!r} holds values outside [{low}, {high}) (from {int(values.min())} to "
                             f"{int(values.max())})")


def _same_length(path: Path, **tensors: torch.Tensor | None) -> None:
    sizes = {key: value.shape[0] for key, value in tensors.items() if value is not None}
    if len(set(sizes.values())) > 1:
        raise _damaged(path, "these tensors must have one row each per item: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))


def _check_counts(counts: torch.Tensor, key: str, total: int, total_key: str, path: Path) -> None:
    """CSR counts (v2 files): each in ``[0, total]`` (so their sum cannot overflow), adding up to ``total``,
    the entries stored: a count can never make the decoder allocate more than the file holds."""
    _within(counts, key, 0, total + 1, path)
    if int(counts.long().sum()) != total:
        raise _damaged(path, f"{key!r} adds up to {int(counts.long().sum())}, but {total_key!r} holds {total}")


def _check_ptr(ptr: torch.Tensor, key: str, rows: int, total: int, path: Path) -> None:
    """CSR offsets (v1 files and decoded tables): ``rows + 1`` non-decreasing values from 0 to ``total``."""
    if ptr.dim() != 1 or ptr.numel() != rows + 1 or int(ptr[0]) != 0 or int(ptr[-1]) != total or bool(
            (ptr[1:] < ptr[:-1]).any()):
        raise _damaged(path, f"{key!r} must be {rows + 1} non-decreasing offsets from 0 to {total}")


def _check_v2_counts(state: dict, path: Path) -> None:
    """Every count and table of a v2 file against the tensors it indexes, before decoding allocates anything."""
    t = state["tensors"]
    for l in range(1, state["depth"] + 1):
        label, count, edge, child = (_ints(t, f"level{l}.{k}", path) for k in ("label", "num_children", "child_edge_label", "child"))
        _same_length(path, **{f"level{l}.label": label, f"level{l}.num_children": count})
        _same_length(path, **{f"level{l}.child": child, f"level{l}.child_edge_label": edge})
        _check_counts(count, f"level{l}.num_children", child.numel(), f"level{l}.child", path)
    size, trees, entries = (_ints(t, k, path) for k in ("pattern_size", "pattern_trees", "pattern_entries"))
    _same_length(path, pattern_size=size, pattern_entries=entries)
    _check_counts(size, "pattern_size", trees.numel(), "pattern_trees", path)
    entry_class = _ints(t, "entry_class", path)
    _check_counts(entries, "pattern_entries", entry_class.numel(), "entry_class", path)
    task = _ints(t, "entry_task", path, optional=True)
    _same_length(path, entry_class=entry_class, entry_frequency=_ints(t, "entry_frequency", path), entry_task=task,
                 entry_mass=t.get("entry_mass"))
    num_tasks = state["meta"].get("num_tasks", 1)
    _within(entry_class, "entry_class", 0, state["num_classes"], path)
    if task is not None:
        _within(task, "entry_task", 0, num_tasks, path)
    # one entry per (task, class) of a pattern: decoding copies a pattern's trees once per entry, so this
    # bounds the decoded trees by the stored ones x num_tasks x num_classes
    pattern_of = torch.arange(size.numel()).repeat_interleave(entries.long())
    keys = torch.stack([pattern_of, entry_class.long(), pattern_of * 0 if task is None else task.long()], 1)
    if torch.unique(keys, dim=0).shape[0] != keys.shape[0]:
        raise _damaged(path, "a pattern has two entries for one class (of one task)")
    if state["meta"].get("class_sizes") is None:
        raise _damaged(path, "meta.class_sizes is missing")
    dtypes = state.get("dtypes")
    wanted = {"node_features"} | ({"edge_features"} if "edge_features" in t else set())
    if not isinstance(dtypes, dict) or set(dtypes) != wanted or any(v not in FEATURE_DTYPES for v in dtypes.values()):
        raise _damaged(path, f"dtypes must name one of {sorted(FEATURE_DTYPES)} for each of {sorted(wanted)}, got {dtypes!r}")


@dataclass
class DistilledDataset:
    """A Mirage distilled set in memory: one (pattern, class) entry per row (module docstring).

    Args:
        depth: depth ``L`` of the computation trees (the GNN's layers).
        num_classes: classes per task.
        levels: decoding tables of the kept trees, levels ``1..depth`` (:class:`~graphdistill.mirage.trees.LevelTable`).
        node_features, edge_features: the feature row of every node / edge label the trees use.
        pattern_ptr, pattern_trees: CSR of every entry's top-level tree ids.
        pattern_class, pattern_frequency, pattern_task, pattern_mass: per entry, its class, support count,
            task (multi-task sets) and readout mass.
        feature_spec: what the GNN's node encoder expects.
        original_nbytes: payload of the training graphs the set replaces, as PyG holds them (int64 integers).
        original_compact_nbytes: the same graphs with every integer in its smallest dtype, as the set counts
            its own (``graphs_nbytes(compact=True)``; None in files written before it was recorded).
        meta: how it was distilled (data set, supports, ``class_sizes`` per task and class, ...).

    Shapes:
        node_features ``[K_n, F]``, edge_features ``[K_e, F_e]``, pattern_ptr ``[P + 1]``, pattern_trees
        ``[nnz]``, pattern_class / pattern_frequency / pattern_task / pattern_mass ``[P]``.
    """

    depth: int
    num_classes: int
    levels: list[LevelTable]  # decoding tables of the kept trees, level 1..depth
    node_features: torch.Tensor  # [K_n, F] feature row of every kept node label
    edge_features: torch.Tensor | None  # [K_e, F_e] feature row of every edge label
    pattern_ptr: torch.Tensor  # [P + 1]
    pattern_trees: torch.Tensor  # [nnz] top-level tree ids
    pattern_class: torch.Tensor  # [P]
    pattern_frequency: torch.Tensor  # [P] support count of the pattern in its class
    feature_spec: FeatureSpec
    original_nbytes: int  # payload of the training graphs it replaces
    meta: dict = field(default_factory=dict)
    pattern_task: torch.Tensor | None = None  # [P] task of every pattern (multi-task sets only)
    pattern_mass: torch.Tensor | None = None  # [P] readout mass in its class (None: files without it)
    original_compact_nbytes: int | None = None  # the training graphs' payload counted as the set's own

    @property
    def num_tasks(self) -> int:
        return int(self.meta.get("num_tasks", 1))

    @property
    def num_patterns(self) -> int:
        return self.pattern_class.numel()

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor the file stores (what :attr:`nbytes` counts; module docstring): each distinct pattern
        once with its (class, frequency, mass) entries, integers in their smallest dtype."""
        sizes = (self.pattern_ptr[1:] - self.pattern_ptr[:-1]).tolist()
        trees = self.pattern_trees.tolist()
        offsets = self.pattern_ptr.tolist()
        entries: dict[tuple[int, ...], list[int]] = {}  # distinct pattern -> its entries, in first-seen order
        for p, start in enumerate(offsets[:-1]):
            entries.setdefault(tuple(trees[start : start + sizes[p]]), []).append(p)
        order = torch.tensor([p for found in entries.values() for p in found], dtype=torch.long)
        out = {
            "node_features": smallest_int(self.node_features),
            "pattern_size": smallest_int(torch.tensor([len(t) for t in entries], dtype=torch.long)),
            "pattern_trees": smallest_int(torch.tensor([t for pattern in entries for t in pattern], dtype=torch.long)),
            "pattern_entries": smallest_int(torch.tensor([len(found) for found in entries.values()], dtype=torch.long)),
            "entry_class": smallest_int(self.pattern_class[order]),
            "entry_frequency": smallest_int(self.pattern_frequency[order]),
        }
        if self.edge_features is not None:
            out["edge_features"] = smallest_int(self.edge_features)
        if self.pattern_task is not None:
            out["entry_task"] = smallest_int(self.pattern_task[order])
        if self.pattern_mass is not None:
            out["entry_mass"] = self.pattern_mass[order]
        for l, table in enumerate(self.levels, start=1):
            out[f"level{l}.label"] = smallest_int(table.label)
            out[f"level{l}.num_children"] = smallest_int(table.ptr[1:] - table.ptr[:-1])
            out[f"level{l}.child_edge_label"] = smallest_int(table.child_edge_label)
            out[f"level{l}.child"] = smallest_int(table.child)
        return out

    @property
    def nbytes(self) -> int:
        """Payload in bytes (sum of the stored tensors), comparable to :func:`graphs_nbytes`."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    @property
    def compression_ratio(self) -> float:
        """Training graphs as PyG holds them (int64) over the set's payload: the reference code's count."""
        return self.original_nbytes / max(self.nbytes, 1)

    @property
    def compact_compression_ratio(self) -> float | None:
        """Training graphs over the set's payload with both counted alike (integers in their smallest dtype);
        None for files that do not record the compact count."""
        return None if self.original_compact_nbytes is None else self.original_compact_nbytes / max(self.nbytes, 1)

    def save(self, path: str | Path) -> int:
        """Writes the set to ``path`` atomically (temporary file, then rename); returns the file size.
        Loading it returns the entries grouped by pattern (the order :func:`~graphdistill.mirage.distill.distill`
        already gives them)."""
        path = Path(path)
        state = {
            "format": FORMAT,
            "depth": self.depth,
            "num_classes": self.num_classes,
            "feature_spec": asdict(self.feature_spec),
            "original_nbytes": self.original_nbytes,
            "original_compact_nbytes": self.original_compact_nbytes,
            "meta": self.meta,
            "dtypes": {"node_features": _dtype_name(self.node_features.dtype)}
            | ({} if self.edge_features is None else {"edge_features": _dtype_name(self.edge_features.dtype)}),
            "tensors": self.tensors(),
        }
        return save_atomic(state, path).stat().st_size

    @staticmethod
    def load(path: str | Path) -> "DistilledDataset":
        """Reads a file of this format or of the former one (``mirage-distilled-v1``), never unpickling code
        (:func:`~distillcore.serialization.load_state`). Every count, id and table is checked against what
        the file holds before it is decoded, so decoding allocates no more than the stored trees times the
        task x class entries of a pattern.

        Args:
            path: a file written by :meth:`save` (``graphdistill mirage distill``).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: one line: the file is truncated, not a distilled set, or damaged (which part and why).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"distilled data set {path} does not exist (write one with `graphdistill mirage distill`)")
        state = load_state(path, what="distilled data set")
        if not isinstance(state, dict) or state.get("format") not in (FORMAT, FORMAT_V1):
            raise ValueError(f"{path} is not a Mirage distilled data set (expected format {FORMAT!r})")
        _check_header(state, path)
        if state["format"] == FORMAT:
            _check_v2_counts(state, path)
        else:
            for key in ("pattern_ptr", "pattern_trees", "pattern_class", "pattern_frequency") + tuple(
                    f"level{l}.{k}" for l in range(1, state["depth"] + 1) for k in ("label", "ptr", "child_edge_label", "child")):
                _ints(state["tensors"], key, path)
            _ints(state["tensors"], "pattern_task", path, optional=True)
        t = state["tensors"]
        depth = state["depth"]
        if state["format"] == FORMAT_V1:
            levels = [LevelTable(*(t[f"level{l}.{k}"] for k in ("label", "ptr", "child_edge_label", "child"))) for l in range(1, depth + 1)]
            node_features, edge_features = t["node_features"], t.get("edge_features")
            pattern_ptr, pattern_trees, pattern_class = t["pattern_ptr"], t["pattern_trees"], t["pattern_class"]
            pattern_frequency, pattern_task, pattern_mass = t["pattern_frequency"], t.get("pattern_task"), t.get("pattern_mass")
        else:
            def as_int32(key: str) -> torch.Tensor | None:  # the in-memory width of ids and counts
                return t[key].to(torch.int32) if key in t else None

            levels = [
                LevelTable(as_int32(f"level{l}.label"), counts_to_ptr(t[f"level{l}.num_children"]),
                           as_int32(f"level{l}.child_edge_label"), as_int32(f"level{l}.child"))
                for l in range(1, depth + 1)
            ]
            dtypes = state["dtypes"]
            node_features = t["node_features"].to(FEATURE_DTYPES[dtypes["node_features"]])
            edge_features = t["edge_features"].to(FEATURE_DTYPES[dtypes["edge_features"]]) if "edge_features" in t else None
            # Entry e belongs to distinct pattern pattern_of[e]: repeat that pattern's trees for each entry.
            pattern_of = torch.arange(t["pattern_size"].numel()).repeat_interleave(t["pattern_entries"].long())
            positions, pattern_ptr = csr_gather(counts_to_ptr(t["pattern_size"]).long(), pattern_of)
            pattern_ptr, pattern_trees = pattern_ptr.to(torch.int32), t["pattern_trees"].to(torch.int32)[positions]
            pattern_class, pattern_frequency, pattern_task = as_int32("entry_class"), as_int32("entry_frequency"), as_int32("entry_task")
            pattern_mass = t.get("entry_mass")
        distilled = DistilledDataset(
            depth,
            state["num_classes"],
            levels,
            node_features,
            edge_features,
            pattern_ptr,
            pattern_trees,
            pattern_class,
            pattern_frequency,
            FeatureSpec(**state["feature_spec"]),
            state["original_nbytes"],
            state["meta"],
            pattern_task,
            pattern_mass,
            state.get("original_compact_nbytes"),
        )
        distilled._check_tables(path)
        return distilled

    def _check_tables(self, path: Path) -> None:
        """Every id of the decoded set within the table it indexes, every per-pattern tensor one value per
        pattern (both formats): a file that passes trains, or fails with one clear error here."""
        spec = self.feature_spec
        if self.node_features.dim() != 2 or self.node_features.shape[0] < 1 or self.node_features.shape[1] != spec.width:
            raise _damaged(path, f"node_features must be [K >= 1, {spec.width}], got {list(self.node_features.shape)}")
        if not self.node_features.is_floating_point() and spec.cardinalities is not None:
            for j, n in enumerate(spec.cardinalities):  # the categories the encoder embeds
                _within(self.node_features[:, j], f"node_features[:, {j}]", 0, n, path)
        if self.edge_features is not None and self.edge_features.dim() != 2:
            raise _damaged(path, f"edge_features must be 2-D, got {list(self.edge_features.shape)}")
        for key, table in (("node_features", self.node_features), ("edge_features", self.edge_features)):
            if table is not None and table.is_floating_point() and not bool(torch.isfinite(table).all()):
                raise _damaged(path, f"{key} has non-finite values")
        num_edge_labels = self.edge_features.shape[0] if self.edge_features is not None else 2**63 - 1
        below = self.node_features.shape[0]  # level 1's children are node labels
        for l, table in enumerate(self.levels, start=1):
            _check_ptr(table.ptr, f"level{l}.ptr", table.label.numel(), table.child.numel(), path)
            _same_length(path, **{f"level{l}.child": table.child, f"level{l}.child_edge_label": table.child_edge_label})
            _within(table.label, f"level{l}.label", 0, self.node_features.shape[0], path)
            _within(table.child, f"level{l}.child", 0, below, path)
            _within(table.child_edge_label, f"level{l}.child_edge_label", 0, num_edge_labels, path)
            below = table.num_trees
        _check_ptr(self.pattern_ptr, "pattern_ptr", self.pattern_class.numel(), self.pattern_trees.numel(), path)
        _within(self.pattern_trees, "pattern_trees", 0, below, path)
        _same_length(path, pattern_class=self.pattern_class, pattern_frequency=self.pattern_frequency,
                     pattern_task=self.pattern_task, pattern_mass=self.pattern_mass)
        _within(self.pattern_class, "pattern_class", 0, self.num_classes, path)
        if self.pattern_task is not None:
            _within(self.pattern_task, "pattern_task", 0, self.num_tasks, path)
        _within(self.pattern_frequency, "pattern_frequency", 0, 2**63 - 1, path)
        mass = self.pattern_mass
        if mass is not None and (mass.dim() != 1 or not mass.is_floating_point() or not bool((mass >= 0).all())
                                 or not bool(torch.isfinite(mass).all())):
            raise _damaged(path, "pattern readout masses must be finite floats >= 0")

    def sampling_weights(self, class_prior: bool = True) -> torch.Tensor:
        """[P] weights of the patterns (module docstring): readout masses (support counts for files without
        them), rescaled to the class prior (with several tasks: every task the same mass, split over its
        classes by their shares).

        Args:
            class_prior: rescale each class's weights to its share of the training graphs (else raw masses).

        Shapes:
            -> ``[P]`` float64.
        """
        frequency = (self.pattern_frequency if self.pattern_mass is None else self.pattern_mass).double()
        if not class_prior:
            return frequency
        groups = self.pattern_class.long()
        if self.pattern_task is not None:
            groups = groups + self.pattern_task.long() * self.num_classes
        sizes = torch.tensor(self.meta["class_sizes"], dtype=torch.float64).reshape(self.num_tasks, -1)
        prior = (sizes / sizes.sum(1, keepdim=True) / self.num_tasks).reshape(-1)
        mass = torch.zeros(prior.numel(), dtype=torch.float64).index_add_(0, groups, frequency)
        return frequency / mass[groups] * prior[groups]

    def to_graphs(self, class_prior: bool = True) -> tuple[list[Data], torch.Tensor]:
        """One training graph per pattern and its sampling weight [P] (:meth:`sampling_weights`).

        Args:
            class_prior: as :meth:`sampling_weights`.

        Shapes:
            -> ``P`` graphs (``x`` ``[n_p, F]``, ``edge_index`` ``[2, e_p]``, ``root_mask`` ``[n_p]``, ``y`` ``[1]``)
            and weights ``[P]``.
        """
        levels = [LevelTable(*(v.long() for v in asdict(table).values())) for table in self.levels]
        trees = self.pattern_trees.long()
        sizes = (self.pattern_ptr[1:] - self.pattern_ptr[:-1]).long()
        unrolled = unroll_trees(levels, self.depth, trees)
        pattern_of_tree = torch.arange(self.num_patterns).repeat_interleave(sizes)
        node_pattern = pattern_of_tree[unrolled.tree]
        # Group nodes by pattern (stable: each tree's root stays ahead of its nodes).
        order = torch.sort(node_pattern, stable=True)[1]
        new_index = torch.empty_like(order)
        new_index[order] = torch.arange(order.numel())
        is_root = torch.zeros(order.numel(), dtype=torch.bool)
        is_root[unrolled.roots] = True
        node_ptr = torch.zeros(self.num_patterns + 1, dtype=torch.long)
        node_ptr[1:] = torch.cumsum(torch.bincount(node_pattern, minlength=self.num_patterns), 0)
        src, dst = new_index[unrolled.edge_index]
        edge_order = torch.sort(dst, stable=True)[1]
        src, dst = src[edge_order], dst[edge_order]
        edge_labels = unrolled.edge_labels[edge_order]
        edge_ptr = torch.zeros(self.num_patterns + 1, dtype=torch.long)
        edge_ptr[1:] = torch.cumsum(torch.bincount(node_pattern[unrolled.edge_index[1]], minlength=self.num_patterns), 0)
        x = self.node_features[unrolled.node_labels[order]]
        root_mask = is_root[order]
        graphs = []
        for p in range(self.num_patterns):
            n0, n1, e0, e1 = int(node_ptr[p]), int(node_ptr[p + 1]), int(edge_ptr[p]), int(edge_ptr[p + 1])
            graph = Data(
                x=x[n0:n1],
                edge_index=torch.stack([src[e0:e1], dst[e0:e1]]) - n0,
                y=self.pattern_class[p : p + 1].long(),
                root_mask=root_mask[n0:n1],
            )
            if self.edge_features is not None:
                graph.edge_attr = self.edge_features[edge_labels[e0:e1]]
            if self.pattern_task is not None:
                graph.task = self.pattern_task[p : p + 1].long()  # y is the class in this task only
            graphs.append(graph)
        return graphs, self.sampling_weights(class_prior)


def prune_tables(levels: list[LevelTable], top_ids: torch.Tensor) -> tuple[list[LevelTable], torch.Tensor, torch.Tensor]:
    """Keeps only the trees reachable from ``top_ids`` and renumbers every level densely (int32).

    Returns (pruned levels, ``top_ids`` renumbered, the kept node labels in old numbering: row ``i``
    of the new node-label space is old label ``kept[i]``).

    Args:
        levels: decoding tables of levels ``1..L`` (int64).
        top_ids: ids of level-``L`` trees to keep (repeats allowed).

    Shapes:
        ``top_ids`` ``[T]`` -> levels, ``[T]`` int32, ``[K]`` int64.
    """
    keep = torch.unique(top_ids)
    new_top = torch.searchsorted(keep, top_ids)
    pruned: list[LevelTable] = []
    for table in reversed(levels):
        positions, ptr = csr_gather(table.ptr, keep)
        child = table.child[positions]
        label = table.label[keep]
        keep = torch.unique(child)
        pruned.append(LevelTable(label, ptr, table.child_edge_label[positions], torch.searchsorted(keep, child)))
    pruned.reverse()
    # `keep` now holds the node labels level 1 uses as children; roots of every level add theirs.
    level1_children = keep[pruned[0].child]
    used_labels = torch.unique(torch.cat([keep] + [t.label for t in pruned]))
    for table in pruned:
        table.label = torch.searchsorted(used_labels, table.label)
    pruned[0].child = torch.searchsorted(used_labels, level1_children)
    as_int32 = [LevelTable(*(v.to(torch.int32) for v in asdict(t).values())) for t in pruned]
    return as_int32, new_top.to(torch.int32), used_labels
