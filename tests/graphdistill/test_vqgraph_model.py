"""VQGraph teacher, student, losses, splits, validation-only selection, checkpoints, save/load/export."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.utils import to_undirected

from distillcore.code_assignment import soft_code_assignment_kl
from graphdistill.datasets import make_node_graph, sbm_graph, SBMConfig
from graphdistill.vqgraph import MLPStudent
from graphdistill.vqgraph.config import DistillConfig, SplitConfig, StudentConfig, TeacherConfig, TrainConfig
from graphdistill.vqgraph.reconstruction import edge_reconstruction_loss, sample_non_edges
from graphdistill.vqgraph.splits import make_split, observed_graph, production_score
from graphdistill.vqgraph.teacher import VQGNNTeacher
from graphdistill.vqgraph.trainer import TeacherTargets, train_student, train_teacher

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL_TEACHER = TeacherConfig(hidden_dim=16, code_dim=8, codebook_size=16, kmeans_init=False)

@pytest.fixture(scope="module")
def small_graph():
    return sbm_graph(SBMConfig(num_nodes=300, num_blocks=3, avg_degree=6, homophily=0.9, feature_dim=8,
                               class_separation=1.0), seed=3)

@pytest.mark.parametrize("arch", ["gcn", "sage", "gat"])
def test_teacher_forward_backward_with_isolated_node(arch):
    x = torch.randn(6, 5)
    edge_index = to_undirected(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))  # node 5 isolated
    teacher = VQGNNTeacher(5, 3, TeacherConfig(architecture=arch, hidden_dim=8, code_dim=4, codebook_size=4,
                                               gat_heads=2, kmeans_init=False))
    out = teacher(x, edge_index)
    assert out.logits.shape == (6, 3) and out.embedding.shape == (6, 4) and out.indices.shape == (6,)
    assert bool(torch.isfinite(out.logits).all())
    loss = F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 0, 1, 2])) + sum(teacher.tokenizer_loss(out, x, edge_index).values())
    loss.backward()
    assert all(p.grad is not None for p in teacher.encoder[0].parameters())
    assert teacher.to_code.weight.grad.abs().sum() > 0  # straight-through reaches the encoder

def test_edge_reconstruction_loss_is_bce_on_sampled_pairs():
    emb = torch.randn(5, 3)
    edge_index = to_undirected(torch.tensor([[0, 1], [1, 2]]))
    torch.manual_seed(0)
    loss = edge_reconstruction_loss(emb, edge_index, negatives_per_edge=1.0)
    torch.manual_seed(0)
    neg = sample_non_edges(edge_index, 5, 4)
    pos_scores = (emb[edge_index[0]] * emb[edge_index[1]]).sum(-1)
    neg_scores = (emb[neg[0]] * emb[neg[1]]).sum(-1)
    by_hand = -(F.logsigmoid(pos_scores).sum() + F.logsigmoid(-neg_scores).sum()) / (pos_scores.numel() + neg_scores.numel())
    assert torch.allclose(loss, by_hand, atol=1e-6)

def test_non_edges_are_uniform_non_edges():
    edge_index = to_undirected(torch.tensor([[0, 1, 2], [1, 2, 3]]))
    pairs = sample_non_edges(edge_index, 4, 6000)
    edge_set = set(map(tuple, edge_index.t().tolist()))
    counts = {}
    for p in map(tuple, pairs.t().tolist()):
        assert p not in edge_set and p[0] != p[1]
        counts[p] = counts.get(p, 0) + 1
    assert len(counts) == 12 - 6  # every ordered non-edge appears, about equally often
    assert max(counts.values()) / min(counts.values()) < 1.3
    with pytest.raises(ValueError, match="complete"):
        sample_non_edges(to_undirected(torch.tensor([[0], [1]])), 2, 1)

def test_teacher_rejects_edgeless_graph_and_bad_width():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="no edges"):
        train_teacher(x, torch.zeros(2, 0, dtype=torch.long), y, torch.tensor([0, 1]), torch.tensor([2, 3]), 2,
                      SMALL_TEACHER, TrainConfig(epochs=2), progress=False)
    with pytest.raises(ValueError, match="x must have shape"):
        VQGNNTeacher(5, 2, SMALL_TEACHER)(x, torch.tensor([[0], [1]]))

def test_inductive_split_hides_nodes_and_edges(small_graph):
    split = make_split(small_graph, "inductive", SplitConfig(train_per_class=10, val_per_class=10), seed=0)
    held = set(split.test_inductive.tolist())
    n_test_total = split.test.numel() + split.test_inductive.numel()
    assert split.test_inductive.numel() == round(0.2 * n_test_total)
    assert held.isdisjoint(split.observed.tolist()) and held.isdisjoint(split.train.tolist() + split.val.tolist())
    x_obs, edge_obs = observed_graph(small_graph, split)
    assert x_obs.size(0) == small_graph.num_nodes - len(held)
    global_edges = split.observed[edge_obs]  # back to full-graph ids
    assert not any(int(n) in held for n in global_edges.reshape(-1))
    full = small_graph.edge_index
    touching = torch.isin(full, split.test_inductive).any(0)
    assert global_edges.size(1) == int((~touching).sum()) > 0  # exactly the edges among observed nodes
    trans = make_split(small_graph, "transductive", SplitConfig(train_per_class=10, val_per_class=10), seed=0)
    assert trans.test_inductive.numel() == 0 and trans.observed.numel() == small_graph.num_nodes
    assert math.isclose(production_score(0.9, 0.5), 0.82)

def test_teacher_never_sees_held_out_nodes(small_graph):
    split = make_split(small_graph, "inductive", SplitConfig(train_per_class=10, val_per_class=10), seed=0)
    changed = small_graph.clone()
    changed.x = changed.x.clone()
    changed.x[split.test_inductive] = 100.0  # held-out features and labels must not matter
    changed.y = changed.y.clone()
    changed.y[split.test_inductive] = 0
    runs = []
    for graph in (small_graph, changed):
        x_obs, edge_obs = observed_graph(graph, split)
        local = torch.searchsorted(split.observed, torch.stack([split.train, split.val]))
        runs.append(train_teacher(x_obs, edge_obs, graph.y[split.observed], local[0], local[1], 3, SMALL_TEACHER,
                                  TrainConfig(epochs=5), progress=False))
    assert torch.equal(runs[0].targets.logits, runs[1].targets.logits)

def _tiny_student_problem():
    torch.manual_seed(0)
    centers = torch.randn(3, 6) * 2
    y = torch.arange(3).repeat(40)
    x = centers[y] + torch.randn(120, 6)
    return x, y, torch.arange(0, 30), torch.arange(30, 60)

def test_selection_uses_validation_only():
    x, y, train, val = _tiny_student_problem()
    cfg = TrainConfig(epochs=30, patience=100, lr=0.01)
    scrambled = y.clone()
    scrambled[60:] = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(5))  # test labels
    a, fa = train_student(x, y, train, val, 3, "mlp", StudentConfig(hidden_dim=16), DistillConfig(), cfg, progress=False)
    b, fb = train_student(x, scrambled, train, val, 3, "mlp", StudentConfig(hidden_dim=16), DistillConfig(), cfg,
                          progress=False)
    assert fa.best_epoch == fb.best_epoch
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    best = max(fa.history, key=lambda h: (h["val_acc"], -h["val_loss"]))
    assert fa.best_epoch == best["epoch"]
    assert float((a(x[val]).argmax(-1) == y[val]).float().mean()) == pytest.approx(fa.best_val_acc)

def test_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    x, y, train, val = _tiny_student_problem()
    cfg = TrainConfig(epochs=12, patience=100, checkpoint_every=5)
    ref, _ = train_student(x, y, train, val, 3, "mlp", StudentConfig(hidden_dim=16), DistillConfig(), cfg,
                           progress=False)
    ckpt = tmp_path / "student.ckpt"
    import graphdistill.vqgraph.fit as fit_module

    original = fit_module.save_atomic

    def save_then_crash(obj, path):  # the process dies right after the first checkpoint (epoch 5)
        original(obj, path)
        raise KeyboardInterrupt

    fit_module.save_atomic = save_then_crash
    try:
        with pytest.raises(KeyboardInterrupt):
            train_student(x, y, train, val, 3, "mlp", StudentConfig(hidden_dim=16), DistillConfig(), cfg,
                          checkpoint=ckpt, progress=False)
    finally:
        fit_module.save_atomic = original
    assert ckpt.exists()
    resumed, _ = train_student(x, y, train, val, 3, "mlp", StudentConfig(hidden_dim=16), DistillConfig(), cfg,
                               checkpoint=ckpt, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), resumed.state_dict().values()))
    assert not ckpt.exists()

def test_vqgraph_student_loss_uses_node_ids_into_teacher_targets():
    """A student whose code embedding equals the teacher's rows gets zero code loss only with the right ids."""
    teacher_emb, codebook = torch.randn(10, 4), torch.randn(6, 4)
    nodes = torch.tensor([7, 2, 5])
    assert float(soft_code_assignment_kl(teacher_emb, teacher_emb[nodes], codebook, 0.5, "cosine", index=nodes)) < 1e-6
    assert float(soft_code_assignment_kl(teacher_emb, teacher_emb[nodes], codebook, 0.5, "cosine",
                                         index=torch.arange(3))) > 1e-3

def test_student_distillation_modes_train():
    x, y, _, val = _tiny_student_problem()
    train = torch.tensor([0, 1, 2])  # one label per class; the teacher's soft labels cover all 120 nodes
    targets = TeacherTargets(F.one_hot(y, 3).float() * 5, torch.randn(120, 8), torch.randn(16, 8), "cosine")
    for mode in ("glnn", "vqgraph"):
        student, fit = train_student(x, y, train, val, 3, mode, StudentConfig(hidden_dim=16), DistillConfig(),
                                     TrainConfig(epochs=40, batch_size=32), targets, progress=False)
        assert fit.best_val_acc > 0.9  # the soft labels (here the true classes) were learnt
        assert (student.code_head is not None) == (mode == "vqgraph")
    with pytest.raises(ValueError, match="targets="):
        train_student(x, y, train, val, 3, "glnn", StudentConfig(), DistillConfig(), TrainConfig(epochs=1))

def test_student_save_load_predict_and_torchscript(tmp_path):
    student = MLPStudent(6, 3, StudentConfig(hidden_dim=16, norm="layer"), code_dim=4).eval()
    x = torch.randn(50, 6)
    student.save(tmp_path / "student.pt", extra={"val_acc": 0.5})
    loaded = MLPStudent.load(tmp_path / "student.pt")
    labels, probs = loaded.predict(x, batch_size=7)  # several batches
    assert torch.equal(labels, student(x).argmax(-1))
    assert torch.allclose(probs, F.softmax(student(x), -1), atol=1e-6) and torch.allclose(probs.sum(-1), torch.ones(50))
    student.export_torchscript(tmp_path / "student.ts")
    scripted = torch.jit.load(str(tmp_path / "student.ts"))
    assert torch.allclose(scripted(x), student(x), atol=1e-6)
    with pytest.raises(ValueError, match="5 columns but the student was trained on 6"):
        loaded.predict(torch.randn(3, 5))
    with pytest.raises(ValueError, match="non-finite"):
        loaded.predict(torch.full((2, 6), float("nan")))
    with pytest.raises(FileNotFoundError):
        MLPStudent.load(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a saved MLP student"):
        MLPStudent.load(tmp_path / "other.pt")

def test_graph_input_checks_in_experiment():
    from graphdistill.vqgraph.pipeline import run_experiment
    from graphdistill.vqgraph.config import VQGraphConfig

    graph = make_node_graph(torch.rand(6, 2), torch.tensor([[0, 1], [1, 2]]), torch.tensor([0, 1, 0, 1, 0, 1]))
    graph.y = torch.tensor([0, 1, 0, 1, 0, 5])
    with pytest.raises(ValueError, match="labels outside"):
        run_experiment(graph, "transductive", VQGraphConfig(), progress=False)


def test_latency_protocol_teacher_on_k_hop_subgraph_equals_full_graph(small_graph):
    from graphdistill.vqgraph.latency import inductive_latency
    from torch_geometric.utils import k_hop_subgraph

    teacher = VQGNNTeacher(8, 3, SMALL_TEACHER).eval()
    student = MLPStudent(8, 3, StudentConfig(hidden_dim=16)).eval()
    with torch.no_grad():
        full = teacher(small_graph.x, small_graph.edge_index).logits
        for node in (0, 150):  # a 2-layer GNN only needs the 2-hop neighbourhood
            subset, edge_index, mapping, _ = k_hop_subgraph(node, 2, small_graph.edge_index, relabel_nodes=True)
            assert torch.allclose(teacher(small_graph.x[subset], edge_index).logits[mapping], full[node:node + 1], atol=1e-5)
    result = inductive_latency(teacher, student, small_graph, torch.tensor([0, 150]), repeats=1)
    assert result["nodes_timed"] == 2 and result["teacher_ms"] > 0 and result["student_ms"] > 0
