"""The Gaussian splat parameters: container, point-cloud initialisation, 3DGS-compatible PLY in/out.

Parameters are stored raw (before activation), as 3DGS and gsplat do, in an ``nn.ParameterDict`` whose
keys are gsplat's, so gsplat's ``DefaultStrategy`` / ``MCMCStrategy`` densify it unchanged:

    means      [N, 3]          centres
    quats      [N, 4]          rotation quaternions (w, x, y, z), normalised by the rasterizer
    scales     [N, 3]          log standard deviations:      scale   = exp(scales)
    opacities  [N]             logits:                       opacity = sigmoid(opacities)
    sh0        [N, 1, 3]       degree-0 SH coefficient:      rgb_dc  = 0.5 + C0 * sh0, C0 = 1 / (2 sqrt(pi))
    shN        [N, K - 1, 3]   higher SH bands, K = (degree + 1)^2
    extras     [N, C] each     optional channel groups: "features" (Feature 3DGS), material channels, ...

Initialisation from a point cloud follows 3DGS: ``scale = log(init_scale * sqrt(mean_{j in kNN(i)} |p_i - p_j|^2))``
over the 3 nearest neighbours, identity rotation, ``opacity = sigmoid^-1(0.1)``, ``sh0 = (rgb - 0.5) / C0``.

PLY columns (what 3DGS viewers read, plus ours): x y z nx ny nz f_dc_0..2 f_rest_* opacity scale_0..2
rot_0..3, then ``feat_0..F-1`` for "features" and ``<name>_0..C-1`` for any other extra group.
f_rest is channel-major (all R coefficients, then G, then B) as 3DGS writes it.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from scipy.spatial import cKDTree
from torch import Tensor, nn

from distillcore.checks import check_positive, check_tensor
from distillcore.serialization import atomic_write, describe_error

SH_C0 = 0.28209479177387814
STANDARD_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")
# PLY column prefix of an extra channel group, where it differs from the group's name
_PLY_PREFIX = {"features": "feat"}
_GROUP_OF_PREFIX = {prefix: group for group, prefix in _PLY_PREFIX.items()}
_STANDARD_COLUMN = re.compile(r"^(x|y|z|nx|ny|nz|opacity|f_dc_\d+|f_rest_\d+|scale_\d+|rot_\d+)$")


@dataclass(frozen=True)
class GaussianInitConfig:
    sh_degree: int = 3
    init_opacity: float = 0.1
    init_scale: float = 1.0  # multiplies the kNN distance
    num_neighbors: int = 3
    min_squared_distance: float = 1e-7  # 3DGS's clamp: coincident points still get a finite scale
    feature_dim: int = 0  # width of the "features" group (0: none)
    material_channels: tuple[tuple[str, int], ...] = ()  # e.g. (("albedo", 3), ("roughness", 1))


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """``[..., 3]`` colours in [0, 1] -> degree-0 SH coefficients: ``(rgb - 0.5) / C0``."""
    return (rgb - 0.5) / SH_C0


def knn_squared_distances(points: Tensor, k: int = 3) -> Tensor:
    """Mean squared distance ``[N]`` from each of ``points [N, 3]`` to its ``k`` nearest other points.

    A KD-tree (scipy) makes this O(N log N); a chunked ``torch.cdist`` + ``topk`` would be O(N^2) and
    PyG's ``knn`` needs torch-cluster / pyg-lib, which are not installable everywhere.
    """
    check_tensor(points, "points", shape=[None, 3], floating=True)
    if points.shape[0] < 2:
        raise ValueError(f"points: need at least 2 points for nearest-neighbour scales, got {points.shape[0]}")
    k = min(k, points.shape[0] - 1)
    tree = cKDTree(points.detach().cpu().double().numpy())
    dist, _ = tree.query(tree.data, k=k + 1)  # column 0 is the point itself
    return torch.from_numpy((dist[:, 1:] ** 2).mean(axis=1)).to(points)


class Gaussians(nn.Module):
    """Splat parameters (raw, see the module doc) in ``self.params``, an ``nn.ParameterDict``."""

    def __init__(self, means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, sh0: Tensor, shN: Tensor,
                 extras: dict[str, Tensor] | None = None):
        super().__init__()
        check_tensor(means, "means", shape=[None, 3], floating=True)
        n = means.shape[0]
        check_tensor(quats, "quats", shape=[n, 4], floating=True)
        check_tensor(scales, "scales", shape=[n, 3], floating=True)
        check_tensor(opacities, "opacities", shape=[n], floating=True)
        check_tensor(sh0, "sh0", shape=[n, 1, 3], floating=True)
        check_tensor(shN, "shN", shape=[n, None, 3], floating=True, nonempty=False)
        degree = math.isqrt(shN.shape[1] + 1) - 1
        if (degree + 1) ** 2 != shN.shape[1] + 1:
            raise ValueError(f"shN must hold (degree + 1)^2 - 1 coefficients, got {shN.shape[1]}")
        params = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "sh0": sh0, "shN": shN}
        for name, value in (extras or {}).items():
            if name in STANDARD_KEYS:
                raise ValueError(f"extra channel group {name!r} clashes with a standard parameter")
            check_tensor(value, f"extras[{name!r}]", shape=[n, None], floating=True)
            params[name] = value
        # pairs, not a dict: ParameterDict sorts a plain dict's keys, and the PLY column order follows these
        self.params = nn.ParameterDict([(k, nn.Parameter(v.detach().clone().float())) for k, v in params.items()])

    @classmethod
    def from_params(cls, params: dict[str, Tensor]) -> "Gaussians":
        """Gaussians holding ``params``, laid out as :attr:`params`: the standard keys and, in their order,
        the extra channel groups (e.g. a state dict's or a subset's tensors)."""
        missing = [k for k in STANDARD_KEYS if k not in params]
        if missing:
            raise ValueError(f"params lacks the standard Gaussian parameters {missing}")
        return cls(**{k: params[k] for k in STANDARD_KEYS},
                   extras={k: v for k, v in params.items() if k not in STANDARD_KEYS})

    @classmethod
    def from_points(cls, points: Tensor, colors: Tensor | None = None,
                    config: GaussianInitConfig = GaussianInitConfig()) -> "Gaussians":
        """3DGS initialisation from ``points [N, 3]`` and ``colors [N, 3]`` in [0, 1] (grey if None)."""
        check_tensor(points, "points", shape=[None, 3], floating=True)
        n = points.shape[0]
        if colors is None:
            colors = torch.full((n, 3), 0.5)
        check_tensor(colors, "colors", shape=[n, 3], floating=True)
        if config.sh_degree < 0:
            raise ValueError(f"sh_degree must be >= 0, got {config.sh_degree}")
        check_positive(config.init_scale, "init_scale")
        opacity = config.init_opacity
        if not 0.0 < opacity < 1.0:
            raise ValueError(f"init_opacity must be in (0, 1), got {opacity}")
        dist2 = knn_squared_distances(points.float(), config.num_neighbors).clamp_min(config.min_squared_distance)
        scales = torch.log(config.init_scale * dist2.sqrt())[:, None].repeat(1, 3)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        extras = {name: torch.zeros(n, dim) for name, dim in config.material_channels}
        if config.feature_dim > 0:
            extras["features"] = torch.zeros(n, config.feature_dim)
        return cls(
            means=points.float(),
            quats=quats,
            scales=scales,
            opacities=torch.full((n,), math.log(opacity / (1.0 - opacity))),
            sh0=rgb_to_sh0(colors.float())[:, None, :],
            shN=torch.zeros(n, (config.sh_degree + 1) ** 2 - 1, 3),
            extras=extras,
        )

    # ---- views of the parameters -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def sh_degree(self) -> int:
        return math.isqrt(self.params["shN"].shape[1] + 1) - 1

    @property
    def extra_names(self) -> list[str]:
        return [k for k in self.params if k not in STANDARD_KEYS]

    @property
    def means(self) -> Tensor:
        return self.params["means"]

    @property
    def quats(self) -> Tensor:
        return self.params["quats"]

    @property
    def activated_scales(self) -> Tensor:
        """Standard deviations ``[N, 3]``: ``exp(scales)``."""
        return torch.exp(self.params["scales"])

    @property
    def activated_opacities(self) -> Tensor:
        """Opacities ``[N]`` in (0, 1): ``sigmoid(opacities)``."""
        return torch.sigmoid(self.params["opacities"])

    @property
    def sh_coeffs(self) -> Tensor:
        """All SH coefficients ``[N, K, 3]`` (gsplat's ``colors`` with ``sh_degree``)."""
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    @property
    def features(self) -> Tensor | None:
        """The Feature 3DGS feature group ``[N, F]``, or None."""
        return self.params["features"] if "features" in self.params else None

    @property
    def has_trained_features(self) -> bool:
        """False without a feature group, or with the one all-zero column that ``train --plain`` writes."""
        return self.features is not None and bool(self.features.detach().ne(0).any())

    # ---- PLY ---------------------------------------------------------------------------------------
    def _columns(self) -> dict[str, np.ndarray]:
        """PLY column name -> float32 values ``[N]``, in the 3DGS order plus the extra groups."""
        p = {k: v.detach().cpu().float().numpy() for k, v in self.params.items()}
        n = len(self)
        cols: dict[str, np.ndarray] = {}
        for i, axis in enumerate("xyz"):
            cols[axis] = p["means"][:, i]
        for axis in ("nx", "ny", "nz"):  # 3DGS writes zero normals; viewers expect the columns
            cols[axis] = np.zeros(n, np.float32)
        for i in range(3):
            cols[f"f_dc_{i}"] = p["sh0"][:, 0, i]
        rest = p["shN"].transpose(0, 2, 1).reshape(n, -1)  # channel-major, as 3DGS
        for i in range(rest.shape[1]):
            cols[f"f_rest_{i}"] = rest[:, i]
        cols["opacity"] = p["opacities"]
        for i in range(3):
            cols[f"scale_{i}"] = p["scales"][:, i]
        for i in range(4):
            cols[f"rot_{i}"] = p["quats"][:, i]
        for name in self.extra_names:
            prefix = _PLY_PREFIX.get(name, name)
            for i in range(p[name].shape[1]):
                cols[f"{prefix}_{i}"] = p[name][:, i]
        return cols

    def save_ply(self, path: str | Path) -> Path:
        """Writes a binary little-endian PLY (columns in the module doc), atomically."""
        path = Path(path)
        cols = self._columns()
        for name, values in cols.items():
            if not np.isfinite(values).all():
                raise ValueError(f"Gaussians: column {name} has non-finite values; refusing to write {path}")
        vertex = np.empty(len(self), dtype=[(name, "<f4") for name in cols])
        for name, values in cols.items():
            vertex[name] = values
        return atomic_write(path, lambda tmp: PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp)))

    @classmethod
    def load_ply(cls, path: str | Path) -> "Gaussians":
        """Reads a 3DGS PLY (ours or any 3DGS trainer's); unknown ``<prefix>_<i>`` columns become extras."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"PLY file not found: {path}")
        try:
            # mmap=True, then one copy: plyfile's mmap=False path parses binary rows in Python (12 s for 28k
            # Gaussians against 0.06 s); a truncated file is still refused here (its length is checked)
            elements = PlyData.read(str(path), mmap=True).elements
            element = next((e for e in elements if e.name == "vertex"), None)
            vertex = None if element is None else np.array(element.data)  # a copy: nothing keeps the file mapped
        except Exception as err:  # plyfile raises PlyParseError, ValueError, EOFError, UnicodeDecodeError, ...
            raise ValueError(f"PLY file {path} is truncated or corrupt ({describe_error(err)})") from None
        if element is None:
            raise ValueError(f"{path} is not a 3DGS PLY: it has no vertex element")
        names = [prop.name for prop in element.properties]
        missing = [c for c in ("x", "y", "z", "opacity", "f_dc_0", "f_dc_1", "f_dc_2", "scale_0", "scale_1",
                               "scale_2", "rot_0", "rot_1", "rot_2", "rot_3") if c not in names]
        if missing:
            raise ValueError(f"{path} is not a 3DGS PLY: missing columns {missing}")

        def stack(prefix: str, count: int) -> Tensor:
            return torch.from_numpy(np.stack([np.asarray(vertex[f"{prefix}_{i}"], np.float32) for i in range(count)], 1))

        n = len(vertex["x"])
        num_rest = sum(1 for c in names if c.startswith("f_rest_"))
        if num_rest % 3:
            raise ValueError(f"{path}: {num_rest} f_rest columns is not a multiple of 3")
        rest = stack("f_rest", num_rest) if num_rest else torch.zeros(n, 0)
        groups: dict[str, int] = defaultdict(int)
        for column in names:
            match = re.fullmatch(r"(.+)_(\d+)", column)
            if not _STANDARD_COLUMN.match(column) and match:
                groups[match.group(1)] += 1
        extras = {_GROUP_OF_PREFIX.get(prefix, prefix): stack(prefix, count) for prefix, count in groups.items()}
        return cls(
            means=torch.from_numpy(np.stack([np.asarray(vertex[a], np.float32) for a in "xyz"], 1)),
            quats=stack("rot", 4),
            scales=stack("scale", 3),
            opacities=torch.from_numpy(np.asarray(vertex["opacity"], np.float32)),
            sh0=stack("f_dc", 3)[:, None, :],
            shN=rest.reshape(n, 3, num_rest // 3).transpose(1, 2).contiguous(),
            extras=extras,
        )

    def export(self, path: str | Path, format: str = "ply") -> Path:
        """Writes the splats for viewers: "ply" (ours, with extras), or gsplat's "splat" / "ply_compressed".

        gsplat's ``export_splats`` serves the compact formats; it cannot write extra columns or the
        nx/ny/nz columns, and it silently drops non-finite rows, so "ply" uses ``save_ply``.
        """
        if format == "ply":
            return self.save_ply(path)
        if format not in ("splat", "ply_compressed"):
            raise ValueError(f"format must be 'ply', 'splat' or 'ply_compressed', got {format!r}")
        from gsplat import export_splats

        for name in STANDARD_KEYS:
            check_tensor(self.params[name], name, nonempty=name != "shN")
        p = {k: v.detach().cpu() for k, v in self.params.items()}
        path = Path(path)
        export_splats(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"], p["shN"], format=format,
                      save_to=str(path))
        return path
