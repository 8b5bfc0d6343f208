"""A Feature 3DGS field: 3D Gaussians carrying RGB (spherical harmonics) and a distilled feature vector.

The splats are a :class:`distill3d.gaussians.Gaussians` whose ``"features"`` group ``[N, F]`` holds
each Gaussian's feature; gsplat's densification strategies clone, split and prune it with the rest.
``F`` is the teacher's dimension D, or ``D_low`` with the speed-up decoder, a 1x1 conv mapping
rendered ``D_low`` maps to D. RGB, alpha and features render in one rasterizer pass:

    C(p) = sum_i c_i a_i T_i + T_N bg,     F(p) = dec( sum_i f_i a_i T_i ),   T_i = prod_{j<i} (1 - a_j)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from distillcore.checks import check_tensor
from distillcore.serialization import load_state, save_atomic

from distill3d.gaussians import GaussianInitConfig, Gaussians
from distill3d.render import rasterize

from .decoder import SpeedUpDecoder


@dataclass
class FieldRender:
    rgb: Tensor  # [C, 3, H, W]
    features: Tensor | None  # [C, D, H, W] in the teacher's space (decoded when a decoder is used)
    alpha: Tensor  # [C, 1, H, W]
    meta: dict


class FeatureField(nn.Module):
    """Gaussians with a ``"features"`` group, plus the optional speed-up decoder."""

    def __init__(self, gaussians: Gaussians, teacher_dim: int, decoder_low_dim: int | None = None):
        super().__init__()
        if gaussians.features is None:
            raise ValueError("gaussians has no 'features' group: a feature field needs one")
        width = decoder_low_dim or teacher_dim
        if gaussians.features.shape[1] != width:
            raise ValueError(f"gaussians carry {gaussians.features.shape[1]}-d features, expected {width} "
                             f"({'decoder low_dim' if decoder_low_dim else 'teacher dim'})")
        self.gaussians = gaussians
        self.teacher_dim = teacher_dim
        self.decoder = SpeedUpDecoder(decoder_low_dim, teacher_dim) if decoder_low_dim else None

    @classmethod
    def from_points(cls, points: Tensor, colors: Tensor | None, sh_degree: int, teacher_dim: int,
                    init: GaussianInitConfig, decoder_low_dim: int | None = None) -> "FeatureField":
        """3DGS initialisation (``Gaussians.from_points``) with zero features of the rendered width."""
        config = GaussianInitConfig(sh_degree=sh_degree, init_opacity=init.init_opacity, init_scale=init.init_scale,
                                    feature_dim=decoder_low_dim or teacher_dim)
        return cls(Gaussians.from_points(points, colors, config), teacher_dim, decoder_low_dim)

    @property
    def splats(self) -> nn.ParameterDict:
        """The raw parameters (gsplat's layout), what optimisers and strategies act on."""
        return self.gaussians.params

    @property
    def num_gaussians(self) -> int:
        return len(self.gaussians)

    @property
    def sh_degree(self) -> int:
        return self.gaussians.sh_degree

    @property
    def feature_dim(self) -> int:
        """Width of the per-Gaussian (rendered) features: D, or D_low with the decoder."""
        return self.gaussians.features.shape[1]

    def render(self, viewmats: Tensor, Ks: Tensor, width: int, height: int, *, sh_degree: int | None = None,
               background: Tensor | None = None, with_features: bool = True, decode: bool = True,
               feature_grad_to_geometry: bool = False, backend: str = "auto") -> FieldRender:
        """Renders ``C`` views (``viewmats [C, 4, 4]``, ``Ks [C, 3, 3]``) in one pass.

        ``background [3]`` fills the colour channels where alpha < 1; features blend over zero.
        ``decode=False`` returns the raw ``D_low`` maps of a decoder field.
        """
        g = self.gaussians
        degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
        render, features, alpha, meta = rasterize(
            g.means, g.quats, g.activated_scales, g.activated_opacities, g.sh_coeffs, viewmats, Ks, width, height,
            features=g.features if with_features else None, sh_degree=degree, backgrounds=background,
            render_mode="RGB", feature_grad_to_geometry=feature_grad_to_geometry, backend=backend)
        rgb = render.permute(0, 3, 1, 2)
        if features is not None:
            features = features.permute(0, 3, 1, 2)
            if self.decoder is not None and decode:
                features = self.decoder(features)
        return FieldRender(rgb, features, alpha.permute(0, 3, 1, 2), meta)

    def gaussian_features(self) -> Tensor:
        """Per-Gaussian features in the teacher's space ``[N, D]`` (decoded when a decoder is used)."""
        features = self.gaussians.features
        return self.decoder.decode_rows(features) if self.decoder is not None else features

    @torch.no_grad()
    def compressed(self, mean: Tensor, basis: Tensor) -> "FeatureField":
        """This field compressed after training into a decoder field of ``k`` rendered channels.

        Each Gaussian's teacher-space feature ``f_i`` (:meth:`gaussian_features`) is replaced by its
        least-squares coordinates in the affine subspace ``mean + basis`` (e.g. the teacher's top-k PCA,
        :func:`~distill3d.fields.decoder.teacher_pca`), ``c_i = argmin_c |basis c + mean - f_i|``, and the
        decoder is ``W = basis``, ``b = mean``: the render costs ``k`` channels instead of ``D``, and what is
        dropped is the part of each feature outside the teacher's principal directions.

        Shapes:
            mean: ``[D]``; basis: ``[D, k]``.
        """
        check_tensor(mean, "mean", shape=(self.teacher_dim,), floating=True)
        check_tensor(basis, "basis", shape=(self.teacher_dim, None), floating=True)
        features = self.gaussian_features()
        coords = torch.linalg.lstsq(basis.to(features), (features - mean.to(features)).T).solution.T
        gaussians = Gaussians.from_params({**self.gaussians.params, "features": coords})
        out = FeatureField(gaussians, self.teacher_dim, basis.shape[1])
        out.decoder.init_pca(mean.to(features), basis.to(features))
        return out.to(features.device)

    def config_dict(self) -> dict:
        return {"teacher_dim": self.teacher_dim,
                "decoder_low_dim": self.decoder.low_dim if self.decoder is not None else None}

    def with_gaussians(self, gaussians: Gaussians) -> "FeatureField":
        """A field with other Gaussians (same feature width) and a copy of this field's decoder."""
        out = FeatureField(gaussians, **self.config_dict())
        if self.decoder is not None:
            out.decoder.load_state_dict(self.decoder.state_dict())
        return out

    @classmethod
    def from_state(cls, config: dict, state: dict[str, Tensor]) -> "FeatureField":
        """Rebuilds a field saved as ``(config_dict(), state_dict())`` (any number of Gaussians)."""
        prefix = "gaussians.params."
        params = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        field = cls(Gaussians.from_params(params), config["teacher_dim"], config["decoder_low_dim"])
        field.load_state_dict(state)
        return field

    # ---- files ---------------------------------------------------------------------------------------
    def save(self, ply_path: str | Path) -> Path:
        """Writes the Gaussians as a 3DGS PLY with ``feat_*`` columns, and the decoder (if any) beside it
        as ``<name>.decoder.pt``. Features in the PLY are the rendered ones (``D_low`` with a decoder)."""
        ply_path = self.gaussians.save_ply(ply_path)
        if self.decoder is not None:
            save_atomic({"config": self.config_dict(), "state": self.decoder.state_dict()},
                        ply_path.with_suffix(".decoder.pt"))
        return ply_path

    @classmethod
    def load(cls, ply_path: str | Path) -> "FeatureField":
        """Reads a field written by :meth:`save` (or any 3DGS PLY with ``feat_*`` columns); the decoder
        file beside it is read as plain data (nothing in it runs)."""
        gaussians = Gaussians.load_ply(ply_path)
        if gaussians.features is None:
            raise ValueError(f"{ply_path} has no feat_* columns: it is not a feature field")
        decoder_path = Path(ply_path).with_suffix(".decoder.pt")
        if decoder_path.is_file():
            saved = load_state(decoder_path, what="decoder file")
            if not isinstance(saved, dict) or not {"config", "state"} <= saved.keys():
                raise ValueError(f"decoder file {decoder_path} is not a saved feature decoder (no config / state)")
            field = cls(gaussians, **saved["config"])
            field.decoder.load_state_dict(saved["state"])
            return field
        return cls(gaussians, gaussians.features.shape[1])
