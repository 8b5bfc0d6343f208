"""tree_sizes at its edge: level-0 trees are single nodes whose number the tables do not hold, so a count
of them is refused (it returned an empty tensor, which indexing by tree id then read out of bounds)."""
import pytest
import torch

from graphdistill.mirage.trees import LevelTable, tree_sizes, unroll_trees


def star_levels(fan_out: int, depth: int) -> list[LevelTable]:
    table = LevelTable(torch.zeros(1, dtype=torch.long), torch.tensor([0, fan_out]),
                       torch.zeros(fan_out, dtype=torch.long), torch.zeros(fan_out, dtype=torch.long))
    return [table] * depth


def test_level_zero_sizes_are_refused_not_empty():
    levels = star_levels(3, 2)
    with pytest.raises(ValueError, match="level must be in 1..2"):
        tree_sizes(levels, 0)
    # unrolling level-0 trees needs no count: each is its node
    assert torch.equal(unroll_trees(levels, 0, torch.tensor([0, 4])).node_labels, torch.tensor([0, 4]))


@pytest.mark.parametrize("level", [1, 2])
def test_star_sizes_are_the_geometric_sums(level):
    assert tree_sizes(star_levels(3, 2), level).tolist() == [sum(3 ** k for k in range(level + 1))]
