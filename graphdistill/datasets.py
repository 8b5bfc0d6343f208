"""Data sets of graphdistill, re-exported from ``graphdistill.data``.

Node classification (VQGraph) lives in ``graphdistill/data/node.py``; graph classification (Mirage)
in ``graphdistill/data/graphs.py``.
"""
# --- node classification (graphdistill.data.node) ---
from graphdistill.data.node import (  # noqa: F401
    NODE_DATASETS,
    SBMConfig,
    as_node_graph,
    count_isolated,
    digits_graph,
    karate_club,
    load_amazon,
    load_node_dataset,
    load_ogbn_arxiv,
    load_node_graph_file,
    load_planetoid,
    make_node_graph,
    sbm_graph,
    validate_node_graph,
)

# --- graph classification (graphdistill.data.graphs) ---
from graphdistill.data.graphs import (  # noqa: F401
    OFFLINE_DATASETS,
    GraphArrays,
    GraphSplits,
    ReplicateConfig,
    SplitConfig,
    as_graph,
    graph_splits_from_list,
    load_graph_dataset,
    load_graph_file,
    load_nci_tpsa,
    load_ogb_graph_arrays,
    load_ogb_graph_property,
    load_solubility,
    load_tu_dataset,
    offline_molecules,
    replicate_molecules,
)
