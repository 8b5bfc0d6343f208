"""Atoms of real molecules as one node-classification graph whose labels need the graph.

Every heavy atom of rdkit's 5K NCI molecules (the first ``max_molecules`` that parse) is a node; bonds
are edges; molecules are disjoint components. A node's features describe the atom alone:

    x_v = [one-hot element (C, N, O, S, F, Cl, Br, I, P, other),
           one-hot heavy-atom degree (0 .. 5+), one-hot hydrogen count (0 .. 4+), one-hot charge (-1, 0, +1)]

Its label is the kind of ring system it sits in, which only its neighbourhood decides:

    0 chain                 not in any ring
    1 aliphatic ring        in a ring, not aromatic
    2 aromatic carbocycle   aromatic, every aromatic ring through it is all carbon (benzene)
    3 aromatic heterocycle  in an aromatic ring that contains N, O or S (pyridine, furan, thiophene)

Aromaticity and ring flags are deliberately absent from ``x``: an aromatic CH and an alkene CH have the
same element, degree and hydrogen count, and a ring CH2 looks like a chain CH2, so a graph-free model
can only guess from the atom's statistics (its accuracy with every label is the features-only ceiling),
while a GNN that sees 2-3 hops can find the ring. This is the VQGraph setting where the graph matters.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch_geometric.data import Data

from distillcore.checks import check_range

ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P")
MAX_DEGREE = 5
MAX_HYDROGENS = 4
CHARGES = (-1, 0, 1)
ATOM_CLASSES = ("chain", "aliphatic ring", "aromatic carbocycle", "aromatic heterocycle")
NUM_ATOM_FEATURES = len(ELEMENTS) + 1 + MAX_DEGREE + 1 + MAX_HYDROGENS + 1 + len(CHARGES)


def atom_features(atom) -> list[float]:
    """The one-hot description of one rdkit atom (module docstring), ``NUM_ATOM_FEATURES`` values."""
    element = [0.0] * (len(ELEMENTS) + 1)
    symbol = atom.GetSymbol()
    element[ELEMENTS.index(symbol) if symbol in ELEMENTS else len(ELEMENTS)] = 1.0
    degree = [0.0] * (MAX_DEGREE + 1)
    degree[min(atom.GetDegree(), MAX_DEGREE)] = 1.0
    hydrogens = [0.0] * (MAX_HYDROGENS + 1)
    hydrogens[min(atom.GetTotalNumHs(), MAX_HYDROGENS)] = 1.0
    charge = [0.0] * len(CHARGES)
    charge[CHARGES.index(max(-1, min(1, atom.GetFormalCharge())))] = 1.0
    return element + degree + hydrogens + charge


def atom_ring_classes(mol) -> list[int]:
    """Per atom of ``mol``, its index in ``ATOM_CLASSES`` (module docstring), from rdkit's ring perception."""
    rings = mol.GetRingInfo().AtomRings()
    hetero_aromatic = set()
    for ring in rings:
        atoms = [mol.GetAtomWithIdx(i) for i in ring]
        if all(a.GetIsAromatic() for a in atoms) and any(a.GetSymbol() != "C" for a in atoms):
            hetero_aromatic.update(ring)
    classes = []
    for atom in mol.GetAtoms():
        if not atom.IsInRing():
            classes.append(0)
        elif not atom.GetIsAromatic():
            classes.append(1)
        else:
            classes.append(3 if atom.GetIdx() in hetero_aromatic else 2)
    return classes


def molecules_atom_graph(smiles: list[str], max_molecules: int | None = None) -> Data:
    """The disjoint union of the molecules' heavy-atom graphs, with atom features and ring-class labels.

    Unparsable SMILES are skipped (their count is ``data.skipped``); with ``max_molecules``, reading stops
    once that many molecules parsed.

    Shapes:
        x [N, NUM_ATOM_FEATURES] float32, edge_index [2, 2 * bonds] int64 (both directions), y [N] int64,
        molecule [N] int64 (the molecule each atom belongs to).
    """
    from rdkit import Chem, RDLogger

    features, labels, edges, molecule = [], [], [], []
    skipped = 0
    RDLogger.DisableLog("rdApp.*")  # rejected SMILES would print valence errors
    try:
        parsed = 0
        for text in smiles:
            if max_molecules is not None and parsed == max_molecules:
                break
            mol = Chem.MolFromSmiles(text)
            if mol is None or mol.GetNumAtoms() == 0:
                skipped += 1
                continue
            offset = len(labels)
            features.extend(atom_features(a) for a in mol.GetAtoms())
            labels.extend(atom_ring_classes(mol))
            molecule.extend([parsed] * mol.GetNumAtoms())
            parsed += 1
            for bond in mol.GetBonds():
                u, v = offset + bond.GetBeginAtomIdx(), offset + bond.GetEndAtomIdx()
                edges.extend(((u, v), (v, u)))
    finally:
        RDLogger.EnableLog("rdApp.*")
    if not labels:
        raise ValueError("no molecule could be parsed: the atom graph is empty")
    data = Data(
        x=torch.tensor(features, dtype=torch.float32),
        edge_index=torch.tensor(edges, dtype=torch.long).t().contiguous() if edges else torch.zeros(2, 0, dtype=torch.long),
        y=torch.tensor(labels, dtype=torch.long),
    )
    data.molecule = torch.tensor(molecule, dtype=torch.long)
    data.num_classes = len(ATOM_CLASSES)
    data.skipped = skipped
    return data


def nci_atom_graph(max_molecules: int = 500) -> Data:
    """Atoms of the first ``max_molecules`` parsable molecules of rdkit's ``Data/NCI/first_5k.tpsa.csv``.

    500 molecules give about 10k atoms (the size of the default SBM graph).
    """
    from rdkit import RDConfig

    check_range(max_molecules, "max_molecules", 1, integer=True)
    path = Path(RDConfig.RDDataDir) / "NCI" / "first_5k.tpsa.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the installed rdkit does not ship the NCI TPSA file")
    with open(path) as f:
        smiles = [row[0] for row in csv.reader(line for line in f if not line.startswith("#"))]
    return molecules_atom_graph(smiles, max_molecules)
