"""The atom graph's ring-class labels and atom-only features, on molecules whose answer is known by hand."""
import pytest
import torch

pytest.importorskip("rdkit")

from graphdistill.data.atoms import ATOM_CLASSES, NUM_ATOM_FEATURES, molecules_atom_graph, nci_atom_graph  # noqa: E402
from graphdistill.data.node import load_node_dataset, validate_node_graph  # noqa: E402

CHAIN, ALIPHATIC, CARBOCYCLE, HETEROCYCLE = range(4)


@pytest.mark.parametrize("smiles, expected", [
    ("CCO", [CHAIN] * 3),  # ethanol
    ("C1CCCCC1", [ALIPHATIC] * 6),  # cyclohexane
    ("c1ccccc1", [CARBOCYCLE] * 6),  # benzene
    ("c1ccncc1", [HETEROCYCLE] * 6),  # pyridine
    ("c1ccoc1", [HETEROCYCLE] * 5),  # furan
    ("Cc1ccccc1", [CHAIN] + [CARBOCYCLE] * 6),  # toluene: the methyl is a chain atom
    ("C1=CCCCC1", [ALIPHATIC] * 6),  # cyclohexene: a double bond in a ring is not aromatic
    # indole: atoms 0-3 and 8 only in the benzene ring, 4-8 in the pyrrole ring (fusion atoms 3 and 8)
    ("c1ccc2[nH]ccc2c1", [CARBOCYCLE, CARBOCYCLE, CARBOCYCLE, HETEROCYCLE, HETEROCYCLE,
                          HETEROCYCLE, HETEROCYCLE, HETEROCYCLE, CARBOCYCLE]),
])
def test_ring_classes_of_known_molecules(smiles, expected):
    data = molecules_atom_graph([smiles])
    assert data.y.tolist() == expected


def test_features_describe_the_atom_alone():
    # an aromatic CH (benzene) and an alkene CH (cyclohexene's sp2 carbons, 1,3-butadiene's inner carbons)
    # have equal features but different labels: only the graph tells them apart
    benzene = molecules_atom_graph(["c1ccccc1"])
    butadiene = molecules_atom_graph(["C=CC=C"])
    assert torch.equal(benzene.x[0], butadiene.x[1])
    assert benzene.y[0] != butadiene.y[1]
    ethanol = molecules_atom_graph(["CCO"])
    assert ethanol.x.shape == (3, NUM_ATOM_FEATURES)
    assert (ethanol.x.sum(1) == 4).all()  # one hot value in each of the four groups
    oxygen = ethanol.x[2]
    assert oxygen[2] == 1  # element O
    assert oxygen[10 + 1] == 1  # one heavy neighbour (the degree block starts after the 10 element slots)
    assert oxygen[16 + 1] == 1  # one hydrogen (the hydrogen block starts after the 6 degree slots)


def test_disjoint_molecules_and_bonds():
    data = molecules_atom_graph(["CCO", "not a smiles", "c1ccccc1"])
    assert data.skipped == 1
    assert data.num_nodes == 9 and data.molecule.tolist() == [0] * 3 + [1] * 6
    assert data.edge_index.shape[1] == 2 * (2 + 6)
    src, dst = data.edge_index
    assert (data.molecule[src] == data.molecule[dst]).all()  # no edge between molecules
    validate_node_graph(data)


def test_nci_atom_graph_is_a_registered_node_dataset():
    data = nci_atom_graph(max_molecules=40)
    assert int(data.molecule.max()) == 39
    counts = torch.bincount(data.y, minlength=len(ATOM_CLASSES))
    assert (counts > 0).all()
    full = load_node_dataset("atoms")
    assert full.num_classes == len(ATOM_CLASSES) and full.num_nodes > 5000
    assert torch.equal(full.x[: data.num_nodes], data.x)


def test_empty_input_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        molecules_atom_graph(["not a smiles"])
