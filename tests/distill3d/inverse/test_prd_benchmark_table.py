"""``benchmarks/prd.py`` re-prints a saved result whose NaN values strict JSON stored as null."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from distillcore.serialization import json_safe

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def prd():
    spec = importlib.util.spec_from_file_location("prd_benchmark", ROOT / "benchmarks" / "prd.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_print_table_shows_a_null_value_as_a_dash(prd, capsys):
    row = {"novel_psnr": 25.5, "relit_psnr": 20.0, "relit_psnr_aligned": 21.0, "albedo_psnr": 13.0,
           "oracles": {"relit_psnr_model": 20.0, "albedo_brightness_shadows": float("nan")},
           "fallback": {"unmodelled_fraction_mean": 0.2, "correlation_1_minus_progress_vs_unmodelled": float("nan")},
           "visibility_leak": {"shadow_light_fraction_true": 0.23, "shadow_light_fraction_baked": None}}
    result = {"resolution": [64, 64], "train_views": 28, "test_views": 8, "prd_visibility": row,
              "alpha_one_visibility": row, "plain_3dgs": {"novel_psnr": 26.0}}
    saved = json.loads(json.dumps(json_safe(result)))  # as write_json_atomic stores it: NaN -> null
    assert saved["prd_visibility"]["fallback"]["correlation_1_minus_progress_vs_unmodelled"] is None
    prd.print_table("interreflect", saved)
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("unmodelled light"))
    assert lines[header + 2].startswith("(a) PRD, visibility")
    cells = lines[header + 2][34:].split()  # after the 34-wide label
    assert cells == ["0.200", "-"] + ["-"] * 8  # the mean, the null correlation, then the missing entries
