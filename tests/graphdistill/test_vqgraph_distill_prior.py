"""A graph-free student distilled from a structure-aware teacher reaches the teacher-label ceiling.

Nodes fall into a few feature groups (one-hot, as the atoms' element / degree / H count); the label
depends on the neighbourhood, so within a group it varies, and the classes are imbalanced. The teacher
(which sees the neighbourhood) is right on 90 % of the nodes. The best any function of the features can
do with the teacher's labels is to predict, per group, the teacher's majority label: the teacher-label
ceiling. GLNN's and VQGraph's student loss (``ce_weight = 0``, their ``lamb = 0``) gets there. The few
labels are drawn per class (20 / 30 per class, GLNN's protocol), so a student whose loss also fits them
(``ce_weight = 1``) learns a uniform class prior and predicts rare classes in groups they do not lead,
which is what held GLNN at 65 % on ``atoms`` (benchmarks/vqgraph.py now uses 0 there).
"""
import pytest
import torch
import torch.nn.functional as F

from graphdistill.vqgraph import DistillConfig, SplitConfig, StudentConfig, VQGraphConfig
from graphdistill.vqgraph.splits import random_class_split
from graphdistill.vqgraph.trainer import TeacherTargets, train_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NUM_NODES = 3000
NUM_CLASSES = 4
# Per group: its share of the nodes, the share of its rare class, its frequent and its rare class.
GROUP_SHARE = (0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.05, 0.05)
RARE_SHARE = (0.05, 0.3, 0.35, 0.4, 0.45, 0.3, 0.85, 0.9)
FREQUENT, RARE = (0, 2) * 4, (1, 3) * 4
TEACHER_ACCURACY = 0.9
TEACHER_CONFIDENCE = 4.0  # teacher logit of its predicted class (the others 0): max-prob 0.95


def grouped_graph_labels(seed: int):
    """Features [N, groups] one-hot, true labels [N], teacher labels [N], group ids [N]."""
    g = torch.Generator().manual_seed(seed)
    group = torch.multinomial(torch.tensor(GROUP_SHARE), NUM_NODES, replacement=True, generator=g)
    rare = torch.rand(NUM_NODES, generator=g) < torch.tensor(RARE_SHARE)[group]
    y = torch.where(rare, torch.tensor(RARE)[group], torch.tensor(FREQUENT)[group])
    wrong = torch.rand(NUM_NODES, generator=g) > TEACHER_ACCURACY
    other = (y + torch.randint(1, NUM_CLASSES, (NUM_NODES,), generator=g)) % NUM_CLASSES
    teacher = torch.where(wrong, other, y)
    return F.one_hot(group, len(GROUP_SHARE)).float(), y, teacher, group


def per_group_rule(group: torch.Tensor, labels: torch.Tensor, per_class: bool = False) -> torch.Tensor:
    """[N] the majority label of each node's group; ``per_class``: the label most frequent in the group
    relative to its class size (the Bayes rule under a uniform class prior, what per-class labels teach)."""
    counts = torch.zeros(len(GROUP_SHARE), NUM_CLASSES).index_add_(0, group, F.one_hot(labels, NUM_CLASSES).float())
    if per_class:
        counts = counts / counts.sum(0).clamp_min(1)
    return counts.argmax(1)[group]


@pytest.mark.parametrize("mode", ["glnn", "vqgraph"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_student_reaches_teacher_label_ceiling(mode, seed):
    x, y, teacher, group = grouped_graph_labels(seed)
    train, val, test = random_class_split(y, NUM_CLASSES, SplitConfig(), torch.Generator().manual_seed(seed))
    ceiling = float((per_group_rule(group, teacher)[test] == y[test]).float().mean())
    uniform_prior = float((per_group_rule(group, y, per_class=True)[test] == y[test]).float().mean())
    assert ceiling > uniform_prior + 0.05  # the set-up tells the two rules apart
    one_hot = F.one_hot(teacher, NUM_CLASSES).float()
    # a 4-code codebook, one code per class: the teacher's code of a node is its predicted class
    targets = TeacherTargets(TEACHER_CONFIDENCE * one_hot, one_hot, torch.eye(NUM_CLASSES), "cosine")
    config = VQGraphConfig(student=StudentConfig(hidden_dim=32), distill=DistillConfig(ce_weight=0.0))
    student, _ = train_student(x, y, train, val, NUM_CLASSES, mode, config.student, config.distill,
                               config.student_train, targets, seed=seed, progress=False)
    with torch.no_grad():
        accuracy = float((student(x[test]).argmax(-1) == y[test]).float().mean())
    # Measured (glnn, seeds 0-2): the ceiling exactly (0.732, 0.735, 0.755); with the hard-label CE term at
    # weight 1 (the default) 0.638, 0.676, 0.701, the uniform-prior rule 0.638, 0.676, 0.655.
    assert accuracy >= ceiling - 0.01


def test_mlp_baseline_trains_on_labels_whatever_ce_weight():
    """``ce_weight`` weighs the CE term of the distilled students only: the MLP baseline has no other term."""
    x, y, _, group = grouped_graph_labels(0)
    train, val, test = random_class_split(y, NUM_CLASSES, SplitConfig(), torch.Generator().manual_seed(0))
    config = VQGraphConfig(student=StudentConfig(hidden_dim=32))
    accuracies = []
    for distill in (DistillConfig(ce_weight=0.0), DistillConfig(ce_weight=1.0)):
        student, result = train_student(x, y, train, val, NUM_CLASSES, "mlp", config.student, distill,
                                        config.student_train, seed=0, progress=False)
        with torch.no_grad():
            accuracies.append(float((student(x[test]).argmax(-1) == y[test]).float().mean()))
    # the per-class label rule scores 0.638 here, the most frequent class alone 0.35
    assert accuracies[0] == accuracies[1]
    assert accuracies[0] > 0.55
