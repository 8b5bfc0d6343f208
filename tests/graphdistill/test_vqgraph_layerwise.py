"""Chunked layer-wise teacher inference equals the full-graph forward; GCN on sampled blocks is unbiased."""
import numpy as np
import pytest
import torch

from graphdistill.datasets import SBMConfig, sbm_graph
from graphdistill.sampling import CSRGraph, NeighborSampler
from graphdistill.vqgraph.blocks import block_conv, gcn_block_weights
from graphdistill.vqgraph.config import TeacherConfig
from graphdistill.vqgraph.layerwise import layerwise_inference, load_targets
from graphdistill.vqgraph.teacher import VQGNNTeacher

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def graph():
    # degrees 1..~30: GCN's normalisation differs visibly between global and per-chunk degrees
    data = sbm_graph(SBMConfig(num_nodes=1500, num_blocks=3, avg_degree=8, feature_dim=6), seed=0)
    return data, CSRGraph.from_edge_index(data.edge_index, data.num_nodes)


@pytest.mark.parametrize("arch", ["sage", "gat", "gcn"])
def test_chunked_inference_equals_full_graph(arch, graph, tmp_path):
    data, csr = graph
    teacher = VQGNNTeacher(6, 3, TeacherConfig(architecture=arch, hidden_dim=16, code_dim=8, codebook_size=16,
                                               num_layers=3, gat_heads=2))
    teacher.train()
    teacher(data.x, data.edge_index)  # k-means init and one EMA step: a codebook of data-derived codes
    teacher.eval()
    with torch.no_grad():
        full = teacher(data.x, data.edge_index)
    # chunks of 200 targets: every chunk reads neighbours outside itself
    out = layerwise_inference(teacher, data.x.numpy(), csr, tmp_path, chunk_size=200)
    assert np.abs(np.load(out.logits) - full.logits.numpy()).max() < 1e-5
    assert np.abs(np.load(out.embedding) - full.embedding.numpy()).max() < 1e-5
    assert (np.load(out.codes) == full.indices.numpy()).all()
    assert out.codebook_usage["codes_used"] == full.indices.unique().numel()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npy", "embedding.npy", "logits.npy"]
    targets = load_targets(out, teacher.codebook, "cosine")
    assert torch.allclose(targets.logits[[3, 700]], full.logits[[3, 700]], atol=1e-5)


def test_gcn_on_sampled_blocks_is_unbiased_with_global_degrees(graph):
    """E[sampled GCN layer] = full GCN layer: kept messages scaled by deg/|S|, degrees of the whole graph."""
    data, csr = graph
    conv = VQGNNTeacher(6, 3, TeacherConfig(architecture="gcn", hidden_dim=8, code_dim=4, codebook_size=4)).encoder[0]
    conv.bias.data.zero_()
    with torch.no_grad():
        full = conv(data.x, data.edge_index)
    seeds = torch.nonzero(csr.degree() >= 8).view(-1)[:50]  # every seed loses neighbours at fan-out 3
    sampler, degree = NeighborSampler(csr, (3,)), csr.degree()
    generator, total, trials = torch.Generator().manual_seed(0), torch.zeros(seeds.numel(), 8), 3000
    with torch.no_grad():
        for _ in range(trials):
            batch = sampler.sample(seeds, generator)
            block = batch.blocks[0]
            total += block_conv(conv, data.x[batch.n_id], block, gcn_block_weights(block, batch.n_id, degree))
    error = (total / trials - full[seeds]).abs().max()
    assert float(error) < 0.03 * float(full[seeds].abs().max())
    # per-block degrees (what GCNConv would compute on the block) are biased: the test can tell
    with torch.no_grad():
        batch = sampler.sample(seeds, generator)
        local = conv(data.x[batch.n_id], batch.blocks[0].edge_index)[: seeds.numel()]
    assert float((local - full[seeds]).abs().max()) > 5 * float(error)
