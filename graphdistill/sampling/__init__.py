"""Graph sampling for mini-batch GNN training: CSR graphs and uniform neighbour sampling into blocks."""
from graphdistill.sampling.csr import CSRGraph
from graphdistill.sampling.neighbor import Block, NeighborSampler, SampledSubgraph, check_fanouts, sample_neighbors

__all__ = ["Block", "CSRGraph", "NeighborSampler", "SampledSubgraph", "check_fanouts", "sample_neighbors"]
