"""Node-classification graphs: offline sets that ship with packages, and PyG-backed loaders.

Every loader returns a ``torch_geometric.data.Data`` with ``x`` [N, F] float32, ``edge_index`` [2, E]
(undirected: both directions present, no self loops), ``y`` [N] int64 and ``num_classes``. Loaders of
public data sets read local files only and raise ``FileNotFoundError`` with the expected layout when
they are missing: nothing is downloaded at run time.

Offline sets:
  * ``digits``: scikit-learn's 8x8 handwritten digits as a 10-NN graph (1797 nodes, 64-d, 10 classes).
  * ``karate``: Zachary's karate club as shipped inside PyG (34 nodes, 4 classes); its random split takes
    1 + 1 nodes per class (``SPLIT_PER_CLASS``).
  * ``sbm``: a stochastic block model with class-conditional Gaussian features, any size.
  * ``atoms``: the atoms of 500 NCI molecules, labelled by the ring system they sit in; features describe
    the atom alone, so the label needs the graph (``graphdistill/data/atoms.py``).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import remove_self_loops, to_undirected

from distillcore.checks import check_positive, check_tensor
from graphdistill.knn import knn_graph

PLANETOID_NAMES = ("Cora", "CiteSeer", "PubMed")
AMAZON_NAMES = ("Computers", "Photo")


def make_node_graph(x: Tensor, edge_index: Tensor, y: Tensor, num_classes: int | None = None) -> Data:
    """Builds a validated, undirected, self-loop-free node-classification graph.

    Args:
        x: node features [N, F]; converted to float32.
        edge_index: edges [2, E] (either or both directions); symmetrised and de-duplicated.
        y: node labels [N] in ``[0, num_classes)``.
        num_classes: number of classes; ``max(y) + 1`` when omitted.
    """
    x = check_tensor(x, "x", ndim=2, floating=True).float()
    num_nodes = x.size(0)
    edge_index = check_tensor(edge_index, "edge_index", ndim=2, dtype=torch.long, nonempty=False)
    y = check_tensor(y, "y", shape=[num_nodes], dtype=torch.long)
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    data = Data(x=x, edge_index=edge_index, y=y, num_classes=num_classes)
    validate_node_graph(data)
    edge_index, _ = remove_self_loops(edge_index)
    data.edge_index = to_undirected(edge_index, num_nodes=num_nodes)
    return data


def validate_node_graph(data: Data) -> Data:
    """Checks a node-classification graph and raises a ``ValueError`` naming what is wrong.

    Rejects: no nodes, non-finite features, ``edge_index`` not [2, E] int64 or pointing outside
    ``[0, N)``, labels not [N] or outside ``[0, num_classes)``. Isolated nodes are allowed (GNN layers
    add self loops or keep the node's own features for them); ``count_isolated`` reports them.
    """
    x = getattr(data, "x", None)
    if x is None:
        raise ValueError("the graph has no node features (data.x is None)")
    if x.dim() != 2 or x.size(0) == 0:
        raise ValueError(f"the graph is empty: data.x must be [N, F] with N > 0, got shape {list(x.shape)}")
    check_tensor(x, "data.x", ndim=2, floating=True)
    num_nodes = x.size(0)
    check_tensor(data.edge_index, "data.edge_index", ndim=2, dtype=torch.long, nonempty=False)
    if data.edge_index.size(0) != 2:
        raise ValueError(f"data.edge_index must have shape [2, E], got {list(data.edge_index.shape)}")
    if data.edge_index.numel() and (int(data.edge_index.min()) < 0 or int(data.edge_index.max()) >= num_nodes):
        raise ValueError(
            f"data.edge_index refers to node {int(data.edge_index.max())} (or a negative id) but the graph "
            f"has {num_nodes} nodes"
        )
    y = check_tensor(data.y, "data.y", shape=[num_nodes], dtype=torch.long)
    num_classes = int(data.num_classes)
    if num_classes < 2:
        raise ValueError(f"data.num_classes must be at least 2, got {num_classes}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(
            f"data.y has labels outside [0, {num_classes}): min {int(y.min())}, max {int(y.max())}"
        )
    return data


SPLIT_MASKS = ("train_mask", "val_mask", "test_mask")


def as_node_graph(data: Data | dict) -> Data:
    """A user's node-classification graph, checked, as the ``Data`` every VQGraph function expects.

    Takes a PyG ``Data(x, edge_index, y)`` or a dict of tensors with those keys (what
    ``data.to_dict()`` returns), optionally with ``num_classes`` and boolean ``train_mask`` /
    ``val_mask`` / ``test_mask`` [N]. ``num_classes`` defaults to ``max(y) + 1``; labels ``[N, 1]``
    (OGB style) are flattened. Edges are kept as given (not symmetrised). The input is not modified.

    Raises a ``ValueError`` naming the problem: missing keys, an empty graph, float labels, labels or
    masks of the wrong length, edges pointing outside the graph, fewer than two classes.
    """
    if isinstance(data, Data):
        values = {key: data[key] for key in data.keys()}
    elif isinstance(data, dict):
        values = dict(data)
    else:
        raise ValueError(f"expected a torch_geometric Data or a dict of tensors, got {type(data).__name__}")
    missing = [key for key in ("x", "edge_index", "y") if values.get(key) is None]
    if missing:
        raise ValueError(f"the graph lacks {missing}: a node-classification graph needs x [N, F], "
                         f"edge_index [2, E] and y [N] (has {sorted(values)})")
    x, edge_index, y = values["x"], values["edge_index"], values["y"]
    for key, value in (("x", x), ("edge_index", edge_index), ("y", y)):
        if not isinstance(value, Tensor):
            raise ValueError(f"graph field {key} must be a tensor, got {type(value).__name__}")
    if x.dim() != 2 or x.size(0) == 0:
        raise ValueError(f"the graph is empty or x is not [N, F]: x has shape {list(x.shape)}")
    if y.dim() == 2 and y.size(1) == 1:
        y = y.view(-1)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class ids (int64), got dtype {y.dtype}")
    if y.dim() != 1 or y.size(0) != x.size(0):
        raise ValueError(f"y must be [N] = [{x.size(0)}] (one class per node), got shape {list(y.shape)}")
    if edge_index.dtype != torch.long and not edge_index.is_floating_point():
        edge_index = edge_index.long()
    num_classes = values.get("num_classes")
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    graph = Data(x=x.float(), edge_index=edge_index, y=y.long(), num_classes=num_classes)
    validate_node_graph(graph)
    present = [key for key in SPLIT_MASKS if values.get(key) is not None]
    if present and len(present) != len(SPLIT_MASKS):
        raise ValueError(f"the graph has {present} but not {sorted(set(SPLIT_MASKS) - set(present))}: give all "
                         "three split masks or none (then a random per-class split is made)")
    for key in present:
        mask = values[key]
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (x.size(0),):
            raise ValueError(f"{key} must be a bool tensor [N] = [{x.size(0)}], got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} {list(getattr(mask, 'shape', []))}")
        if not bool(mask.any()):
            raise ValueError(f"{key} selects no node")
        graph[key] = mask
    return graph


def load_node_graph_file(path: str | os.PathLike) -> Data:
    """A node-classification graph from a ``torch.save`` file, read without running code from it.

    The file holds a dict of tensors ``{x, edge_index, y[, train_mask, val_mask, test_mask]}``; for a
    PyG ``Data`` write ``torch.save(data.to_dict(), "g.pt")`` (a pickled ``Data`` object is refused:
    reading it would have to run code). Checked by :func:`as_node_graph`.
    """
    from distillcore.serialization import load_state

    state = load_state(path, what="graph file")
    if not isinstance(state, dict):
        raise ValueError(f"graph file {path} holds a {type(state).__name__}, not a dict of tensors "
                         "(write it with torch.save(data.to_dict(), path))")
    try:
        return as_node_graph(state)
    except ValueError as err:
        raise ValueError(f"graph file {path}: {err}") from None


def count_isolated(data: Data) -> int:
    """Number of nodes without any incident edge."""
    degree = torch.zeros(data.num_nodes, dtype=torch.long)
    degree.index_add_(0, data.edge_index.reshape(-1), torch.ones(data.edge_index.numel(), dtype=torch.long))
    return int((degree == 0).sum())


def digits_graph(k: int = 10) -> Data:
    """scikit-learn's handwritten digits as a k-NN graph.

    1797 images of 8x8 pixels become nodes with 64 features scaled to [0, 1]; each node links to its
    ``k`` nearest images (Euclidean) and the graph is symmetrised. Edge homophily is about 0.96 for k=10.
    """
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.as_tensor(images, dtype=torch.float32) / 16.0  # pixel intensities are 0..16
    edge_index = knn_graph(x, k)
    return make_node_graph(x, edge_index, torch.as_tensor(labels, dtype=torch.long), num_classes=10)


def karate_club() -> Data:
    """Zachary's karate club (34 nodes, one-hot identity features, 4 communities), bundled with PyG."""
    from torch_geometric.datasets import KarateClub

    data = KarateClub()[0]
    return make_node_graph(data.x, data.edge_index, data.y, num_classes=4)


@dataclass
class SBMConfig:
    """A stochastic block model whose blocks are the classes, with Gaussian class-conditional features.

    Edge probabilities follow from the wanted mean degree ``d`` and edge homophily ``h`` (fraction of
    edges inside a block): ``p_in = h d / (n_b - 1)`` within a block of ``n_b`` nodes and
    ``p_out = (1 - h) d / (N - n_b)`` across blocks. Features are ``x_i = mu_{y_i} + eps_i`` with
    ``eps ~ N(0, I)`` and class means ``mu_c`` of norm ``class_separation`` in random directions.
    """

    num_nodes: int = 10_000
    num_blocks: int = 10
    avg_degree: float = 10.0
    homophily: float = 0.8
    feature_dim: int = 32
    class_separation: float = 2.0


def sbm_block_edges(block_sizes: list[int], edge_probs: Tensor, generator: np.random.Generator) -> Tensor:
    """Samples an undirected SBM exactly, in time proportional to the number of edges.

    ``torch_geometric.utils.stochastic_blockmodel_graph`` enumerates all N(N-1)/2 node pairs, which is
    10^10 pairs at 100k nodes; here each block pair (a, b) draws its edge count
    ``m_ab ~ Binomial(pairs_ab, p_ab)`` and then ``m_ab`` distinct pairs uniformly, which is the same
    distribution as one Bernoulli(p_ab) per pair.

    Args:
        block_sizes: nodes per block; block ``a`` holds the consecutive ids after blocks ``< a``.
        edge_probs: [B, B] symmetric edge probabilities.
    Returns:
        edge_index [2, E] with each undirected edge once (``row < col``).
    """
    check_tensor(edge_probs, "edge_probs", shape=[len(block_sizes), len(block_sizes)], floating=True)
    if bool((edge_probs < 0).any() | (edge_probs > 1).any()):
        raise ValueError("edge_probs must lie in [0, 1]")
    offsets = np.concatenate([[0], np.cumsum(block_sizes)])
    rows, cols = [], []
    for a, size_a in enumerate(block_sizes):
        for b in range(a, len(block_sizes)):
            size_b = block_sizes[b]
            num_pairs = size_a * (size_a - 1) // 2 if a == b else size_a * size_b
            count = int(generator.binomial(num_pairs, float(edge_probs[a, b]))) if num_pairs else 0
            chosen = np.empty(0, dtype=np.int64)
            while chosen.size < count:  # rejection of repeats keeps the pairs distinct
                draw = generator.integers(0, size_a * size_b, size=int((count - chosen.size) * 1.1) + 16)
                if a == b:  # ordered pairs (i, j), i != j, folded onto i < j
                    i, j = draw // size_b, draw % size_b
                    draw = np.minimum(i, j) * size_b + np.maximum(i, j)
                    draw = draw[i != j]
                chosen = np.unique(np.concatenate([chosen, draw]))
            if chosen.size > count:
                chosen = generator.choice(chosen, size=count, replace=False)
            rows.append(offsets[a] + chosen // size_b)
            cols.append(offsets[b] + chosen % size_b)
    return torch.as_tensor(np.stack([np.concatenate(rows), np.concatenate(cols)]), dtype=torch.long)


def sbm_graph(config: SBMConfig = SBMConfig(), seed: int = 0) -> Data:
    """A feature-carrying stochastic block model graph (see ``SBMConfig``); scales to millions of nodes."""
    check_positive(config.num_nodes, "num_nodes")
    check_positive(config.avg_degree, "avg_degree")
    if config.num_blocks < 2 or config.num_nodes < 2 * config.num_blocks:
        raise ValueError(f"need num_blocks >= 2 and at least 2 nodes per block, got {config}")
    if not 0.0 <= config.homophily <= 1.0:
        raise ValueError(f"homophily must lie in [0, 1], got {config.homophily}")
    generator = np.random.default_rng(seed)
    base, extra = divmod(config.num_nodes, config.num_blocks)
    block_sizes = [base + (1 if b < extra else 0) for b in range(config.num_blocks)]
    sizes = torch.tensor(block_sizes, dtype=torch.float64)
    p_in = config.homophily * config.avg_degree / (sizes - 1)
    p_out = (1 - config.homophily) * config.avg_degree / (config.num_nodes - sizes)
    # Symmetric cross-block probability from the mean of both blocks' targets.
    edge_probs = 0.5 * (p_out[:, None] + p_out[None, :])
    edge_probs.fill_diagonal_(0.0)
    edge_probs += torch.diag(p_in)
    edge_index = sbm_block_edges(block_sizes, edge_probs.clamp(0.0, 1.0), generator)
    y = torch.repeat_interleave(torch.arange(config.num_blocks), torch.tensor(block_sizes))
    directions = torch.as_tensor(generator.standard_normal((config.num_blocks, config.feature_dim)), dtype=torch.float32)
    means = config.class_separation * directions / directions.norm(dim=1, keepdim=True)
    noise = torch.as_tensor(generator.standard_normal((config.num_nodes, config.feature_dim)), dtype=torch.float32)
    return make_node_graph(means[y] + noise, edge_index, y, num_classes=config.num_blocks)


def _offline_dataset(cls, root: str | os.PathLike, name: str, url_hint: str):
    """Instantiates a PyG ``InMemoryDataset`` class whose ``download`` raises instead of fetching."""

    def download(self):
        missing = [p for p in self.raw_paths if not os.path.exists(p)]
        raise FileNotFoundError(
            f"{cls.__name__}('{name}') needs its raw files under {self.raw_dir}; missing: "
            f"{', '.join(os.path.basename(p) for p in missing)}. distillkit does not download at run time: "
            f"fetch them once with `python -c \"from torch_geometric.datasets import {cls.__name__}; "
            f"{cls.__name__}('{root}', '{name}')\"` on a machine with internet ({url_hint})."
        )

    offline_cls = type(f"Offline{cls.__name__}", (cls,), {"download": download})
    return offline_cls(str(root), name)


def load_planetoid(root: str | os.PathLike, name: str) -> Data:
    """Cora / CiteSeer / PubMed (public split masks kept) from PyG's local raw files under ``root/name/raw``."""
    from torch_geometric.datasets import Planetoid

    match = {n.lower(): n for n in PLANETOID_NAMES}.get(name.lower())
    if match is None:
        raise ValueError(f"unknown Planetoid data set {name!r}; choose one of {PLANETOID_NAMES}")
    data = _offline_dataset(Planetoid, root, match, "github.com/kimiyoung/planetoid")[0]
    graph = make_node_graph(data.x, data.edge_index, data.y)
    graph.train_mask, graph.val_mask, graph.test_mask = data.train_mask, data.val_mask, data.test_mask
    return graph


def load_amazon(root: str | os.PathLike, name: str) -> Data:
    """Amazon Computers / Photo co-purchase graphs from PyG's local raw files under ``root/name/raw``."""
    from torch_geometric.datasets import Amazon

    match = {n.lower(): n for n in AMAZON_NAMES}.get(name.lower())
    if match is None:
        raise ValueError(f"unknown Amazon data set {name!r}; choose one of {AMAZON_NAMES}")
    data = _offline_dataset(Amazon, root, match, "github.com/shchur/gnn-benchmark")[0]
    return make_node_graph(data.x, data.edge_index, data.y)


def _read_csv_gz(path: Path, dtype) -> np.ndarray:
    with gzip.open(path, "rt") as handle:
        return np.loadtxt(handle, delimiter=",", dtype=dtype, ndmin=2)


def load_ogbn_arxiv(root: str | os.PathLike) -> Data:
    """ogbn-arxiv read straight from OGB's on-disk layout, without the ``ogb`` package.

    Expects ``root/ogbn_arxiv/raw/{node-feat,edge,node-label}.csv.gz`` and
    ``root/ogbn_arxiv/split/time/{train,valid,test}.csv.gz`` (what ``ogb`` leaves after its download);
    the time split becomes ``train_mask`` / ``val_mask`` / ``test_mask``.
    """
    base = Path(root) / "ogbn_arxiv"
    files = {
        "x": base / "raw" / "node-feat.csv.gz",
        "edge": base / "raw" / "edge.csv.gz",
        "y": base / "raw" / "node-label.csv.gz",
        "train": base / "split" / "time" / "train.csv.gz",
        "val": base / "split" / "time" / "valid.csv.gz",
        "test": base / "split" / "time" / "test.csv.gz",
    }
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"ogbn-arxiv files are missing: {', '.join(missing)}. distillkit does not download at run time: "
            "fetch them once with the `ogb` package (`ogb.nodeproppred.NodePropPredDataset('ogbn-arxiv', "
            f"root='{root}')`) on a machine with internet and point root at that folder."
        )
    x = torch.as_tensor(_read_csv_gz(files["x"], np.float32))
    edge_index = torch.as_tensor(_read_csv_gz(files["edge"], np.int64)).t().contiguous()
    y = torch.as_tensor(_read_csv_gz(files["y"], np.int64)).reshape(-1)
    graph = make_node_graph(x, edge_index, y)
    for key, mask_name in (("train", "train_mask"), ("val", "val_mask"), ("test", "test_mask")):
        mask = torch.zeros(graph.num_nodes, dtype=torch.bool)
        mask[torch.as_tensor(_read_csv_gz(files[key], np.int64)).reshape(-1)] = True
        setattr(graph, mask_name, mask)
    return graph


NODE_DATASETS = ("digits", "karate", "sbm", "atoms", "cora", "citeseer", "pubmed", "computers", "photo", "ogbn-arxiv")
# (train, val) nodes per class of the random split for built-in sets whose classes are too small for
# SplitConfig's 20 + 30. Karate (classes of 13 / 12 / 4 / 5 nodes) is labelled with one node per class, as
# PyG's KarateClub documents after Kipf & Welling; one more per class validates, the rest (26 nodes) is test.
SPLIT_PER_CLASS = {"karate": {"train_per_class": 1, "val_per_class": 1}}


def load_node_dataset(name: str, root: str | os.PathLike | None = None, *, seed: int = 0,
                      sbm: SBMConfig | None = None) -> Data:
    """Loads a node-classification graph by name (one of ``NODE_DATASETS``).

    ``root`` is required for the public data sets (cora, citeseer, pubmed, computers, photo, ogbn-arxiv);
    ``seed`` and ``sbm`` configure the generated ``sbm`` graph.
    """
    key = name.lower()
    if key == "digits":
        return digits_graph()
    if key == "karate":
        return karate_club()
    if key == "sbm":
        return sbm_graph(sbm or SBMConfig(), seed=seed)
    if key == "atoms":
        from graphdistill.data.atoms import nci_atom_graph  # rdkit is the optional [graph] extra

        return nci_atom_graph()
    if key not in NODE_DATASETS:
        raise ValueError(f"unknown node data set {name!r}; choose one of {NODE_DATASETS}")
    if root is None:
        raise ValueError(f"data set {name!r} is read from local files: pass --root <folder with its files> "
                         "(Python: root=<folder>)")
    if key in ("cora", "citeseer", "pubmed"):
        return load_planetoid(root, key)
    if key in ("computers", "photo"):
        return load_amazon(root, key)
    return load_ogbn_arxiv(root)


__all__ = [
    "NODE_DATASETS",
    "SBMConfig",
    "SPLIT_PER_CLASS",
    "as_node_graph",
    "load_node_graph_file",
    "count_isolated",
    "digits_graph",
    "karate_club",
    "load_amazon",
    "load_node_dataset",
    "load_ogbn_arxiv",
    "load_planetoid",
    "make_node_graph",
    "sbm_block_edges",
    "sbm_graph",
    "validate_node_graph",
]
