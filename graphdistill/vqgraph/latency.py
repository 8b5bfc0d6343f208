"""Inductive inference latency of a GNN teacher vs an MLP student (GLNN's timing protocol).

A new node arrives: the teacher must gather its L-hop neighbourhood (``k_hop_subgraph`` over the
whole edge list) and run message passing on it; the student reads the node's feature row only.
Both classify the same nodes one at a time; the median over repeats of the total time is reported.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import k_hop_subgraph

from graphdistill.vqgraph.student import MLPStudent
from graphdistill.vqgraph.teacher import VQGNNTeacher


def _median_seconds(fn: Callable[[int], Tensor], nodes: list[int], repeats: int) -> float:
    runs = []
    with torch.inference_mode():
        fn(nodes[0])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            for node in nodes:
                fn(node)
            runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def inductive_latency(teacher: VQGNNTeacher, student: MLPStudent, data: Data, nodes: Tensor, repeats: int = 5) -> dict:
    """Milliseconds to classify ``nodes`` one by one with each model, the speed-up and neighbourhood size."""
    teacher.eval()
    student.eval()
    hops, num_nodes = teacher.config.num_layers, data.num_nodes

    def teacher_infer(node: int) -> Tensor:
        subset, edge_index, mapping, _ = k_hop_subgraph(node, hops, data.edge_index, relabel_nodes=True,
                                                        num_nodes=num_nodes)
        return teacher(data.x[subset], edge_index).logits[mapping]

    def student_infer(node: int) -> Tensor:
        return student(data.x[node: node + 1])

    node_list = nodes.tolist()
    sizes = [k_hop_subgraph(n, hops, data.edge_index, num_nodes=num_nodes)[0].numel() for n in node_list]
    teacher_s = _median_seconds(teacher_infer, node_list, repeats)
    student_s = _median_seconds(student_infer, node_list, repeats)
    return {"num_nodes": num_nodes, "num_edges": int(data.edge_index.size(1)), "hops": hops,
            "nodes_timed": len(node_list), "mean_neighbourhood_size": statistics.fmean(sizes),
            "teacher_ms": 1e3 * teacher_s, "student_ms": 1e3 * student_s, "speedup": teacher_s / student_s,
            "torch_threads": torch.get_num_threads()}
