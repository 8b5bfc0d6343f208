"""Seeded runs repeat bit for bit, and a resumed run continues exactly as an uninterrupted one.

- Feature 3DGS with the native CPU rasterizer (ordered backward sums, any thread count) and the torch
  reference: two native runs give equal fields (the native backward used to add per-tile gradients with
  atomics in thread order: two runs differed by up to 0.017 in the PLY); 2 steps + resume + 2 steps
  equals 4 straight steps, including densification, optimizer moments and random states; the
  checkpoint loads with ``weights_only=True``.
- VQGraph: two experiments with one seed give equal metrics and state dicts. Its edge-reconstruction
  loss indexes ~49k node pairs, and torch's CPU backward of such an index (``index_put_`` accumulate,
  atomics beyond 32k indices) changed the teacher's weights run to run before training ran under
  ``distillcore.determinism.deterministic_algorithms``.
- Mirage: distilling twice gives the same file contents; training twice the same model.
"""
import pathlib
import sys

import pytest
import torch

TESTS = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "distill3d" / "fields"))
from f3dgs_tiny_scene import tiny_scene  # noqa: E402

from distillcore.determinism import deterministic_algorithms  # noqa: E402
from distill3d.fields.config import DensifyConfig, InitConfig, TrainConfig  # noqa: E402
from distill3d.fields.trainer import Trainer  # noqa: E402
from distill3d.render.rasterize import native_status  # noqa: E402

STEPS = 4
# (image size, initial Gaussians): native at a size where its kernels use every thread; the torch
# reference, ~10x slower per step, smaller.
FIELD_SIZES = {"native": (32, 300), "torch": (16, 60)}


def field_config(backend: str) -> TrainConfig:
    points = FIELD_SIZES[backend][1]
    cfg = TrainConfig(steps=STEPS, sh_degree=1, sh_degree_interval=2, eval_every=0, checkpoint_every=0,
                      backend=backend, init=InitConfig(method="random", num_points=points, random_radius=0.25),
                      densify=DensifyConfig(refine_start_iter=1, refine_every=2, reset_every=4, grow_grad2d=1e-6))
    cfg.optim.means_lr_init, cfg.optim.means_lr_final = 1.6e-3, 1.6e-4
    return cfg


def assert_same_trainers(a: Trainer, b: Trainer) -> None:
    fa, fb = a.field.state_dict(), b.field.state_dict()
    assert fa.keys() == fb.keys()
    for key in fa:
        assert torch.equal(fa[key], fb[key]), key
    for name, optimizer in a.optimizers.items():
        for p_a, p_b in zip(optimizer.state.values(), b.optimizers[name].state.values()):
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.equal(p_a[key], p_b[key]), (name, key)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert torch.equal(a.strategy_state["grad2d"], b.strategy_state["grad2d"])


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_field_runs_repeat_and_resume_bit_exactly(tmp_path, backend):
    if backend == "native" and not native_status("cpu")[0]:
        pytest.fail(f"the native CPU backend must build: {native_status('cpu')[1]}")
    size, points = FIELD_SIZES[backend]
    train, test, maps = tiny_scene(num_train=3, num_test=1, size=size, cell=4)
    straight = Trainer(train, field_config(backend), tmp_path / "a", maps, test)
    if backend == "native":  # enough intersections that the kernel splits tiles over every thread
        meta = straight.render_view(train, 0).meta
        assert meta["flatten_ids"].numel() * meta["tile_size"] ** 2 >= 1 << 16
    straight.train(progress=False)
    assert straight.field.num_gaussians != points  # densification ran: its state must resume too

    if backend == "native":  # the torch reference has no thread-dependent sums to begin with
        again = Trainer(train, field_config(backend), tmp_path / "b", maps, test)
        again.train(progress=False)
        assert_same_trainers(straight, again)

    first = Trainer(train, field_config(backend), tmp_path / "c", maps, test)
    first.train(progress=False, until=STEPS // 2)
    torch.manual_seed(1234)  # the process's RNG moved on since: resume must restore it
    torch.rand(7)
    resumed = Trainer(train, field_config(backend), tmp_path / "c", maps, test)
    assert resumed.resume() == STEPS // 2
    resumed.train(progress=False)
    assert_same_trainers(straight, resumed)
    # plain tensors / dicts / lists only: loadable without unpickling code
    state = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert state["torch_rng"].dtype == torch.uint8 and state["step"] == STEPS


def test_deterministic_algorithms_scope():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_algorithms(False):
        assert torch.are_deterministic_algorithms_enabled() == before
    with pytest.raises(RuntimeError):
        with deterministic_algorithms():
            raise RuntimeError("restored on error too")
    assert torch.are_deterministic_algorithms_enabled() == before
    # The kernel that made VQGraph irreproducible: ordered under the scope.
    gen = torch.Generator().manual_seed(0)
    index, values = torch.randint(0, 500, (40_000,), generator=gen), torch.randn(40_000, 8, generator=gen)
    with deterministic_algorithms():
        sums = [torch.zeros(500, 8).index_put_((index,), values, accumulate=True) for _ in range(5)]
    assert all(torch.equal(sums[0], s) for s in sums[1:])


def test_vqgraph_same_seed_same_experiment():
    from graphdistill.vqgraph import StudentConfig, TeacherConfig, TrainConfig as GraphTrainConfig, VQGraphConfig
    from graphdistill.vqgraph import run_experiment
    from graphdistill.vqgraph.config import SplitConfig

    # A random graph with more scored node pairs (edges + as many non-edges) than torch's serial
    # index_put_ limit, so the unordered kernel would run were training not in deterministic mode.
    gen = torch.Generator().manual_seed(0)
    nodes, edges = 400, 20_000
    data = {"x": torch.randn(nodes, 8, generator=gen), "y": torch.arange(nodes) % 4,
            "edge_index": torch.randint(0, nodes, (2, edges), generator=gen)}
    assert 2 * edges > 1 << 15

    def run():
        config = VQGraphConfig(
            teacher=TeacherConfig(hidden_dim=16, codebook_size=8, code_dim=8),
            student=StudentConfig(hidden_dim=16),
            teacher_train=GraphTrainConfig(epochs=2, patience=10),
            student_train=GraphTrainConfig(epochs=1, patience=10),
            split=SplitConfig(train_per_class=10, val_per_class=20),
        )
        return run_experiment(data, "transductive", config, seed=3, students=("vqgraph",), progress=False)

    a, b = run(), run()
    assert a.accuracy == b.accuracy and a.best_epochs == b.best_epochs and a.codebook == b.codebook
    for model_a, model_b in ((a.teacher, b.teacher), (a.students["vqgraph"], b.students["vqgraph"])):
        sa, sb = model_a.state_dict(), model_b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key


@pytest.mark.usefixtures("one_torch_thread")  # tiny batches: extra OpenMP threads only stall
def test_mirage_same_seed_same_distillation_and_model():
    from graphdistill.data.graphs import GraphSplits, molecule_graph
    from graphdistill.mirage.distill import DistillConfig, distill
    from graphdistill.mirage.mining import MiningConfig
    from graphdistill.mirage.models import ModelConfig
    from graphdistill.mirage.train import TrainConfig as MirageTrainConfig, train_gnn

    smiles = [("CCO", 0), ("CCCO", 0), ("OCC(O)C", 0), ("CC(C)O", 0), ("OCCO", 0), ("CCCCO", 0),
              ("CCN", 1), ("CCCN", 1), ("NCC(N)C", 1), ("CC(C)N", 1), ("NCCN", 1), ("CCCCN", 1)]
    graphs = [molecule_graph(s, label, "test") for s, label in smiles]
    splits = GraphSplits("toy", graphs[:4] + graphs[6:10], graphs[4:6] + graphs[10:], graphs[4:6] + graphs[10:], 2,
                         ["OH", "NH2"])

    def run():
        distilled = distill(splits, DistillConfig(depth=2, sweep=None, mining=MiningConfig(min_support=0.25)))
        train_graphs, weights = distilled.to_graphs()
        result = train_gnn(train_graphs, weights, splits.val, splits.test, distilled.feature_spec, 2,
                           ModelConfig(model="gin", hidden=16, num_layers=2),
                           MirageTrainConfig(epochs=3, samples_per_epoch=64, batch_size=16, seed=5))
        return distilled, result

    (da, ra), (db, rb) = run(), run()
    assert da.num_patterns > 0
    ta, tb = da.tensors(), db.tensors()
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key
    assert ra.history == rb.history and ra.val == rb.val and ra.test == rb.test
    sa, sb = ra.model.state_dict(), rb.model.state_dict()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
