"""The docs' result tables are generated from benchmarks/results/*.json and must match them.

If this fails after a benchmark run, run `make docs` (tools/make_docs.py) and commit the docs.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "tools" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


make_docs = _load_make_docs()


def test_committed_docs_are_up_to_date_and_links_resolve(capsys):
    rc = make_docs.main(["--check"])
    err = capsys.readouterr().err
    assert rc == 0, f"docs out of date or broken links (run `make docs`):\n{err}"


def test_every_generated_region_is_placed_in_some_doc():
    text = "\n".join(p.read_text() for p in make_docs.doc_files())
    for name in make_docs.TABLES:
        assert f"<!-- table:{name} -->" in text, f"table {name} is rendered nowhere"
    for name in make_docs.HEADLINES:
        assert f"<!-- headline:{name} -->" in text, f"headline {name} is rendered nowhere"


def test_codebook_renderer_on_synthetic_results():
    data = {"study": {"codebook_size": 8, "epochs": 3, "batch_size": 16, "restart_threshold": 1.0, "seed": 0},
            "results": {"EMA, random init": {"codes_used": 1, "perplexity": 1.0, "relative_distortion": 1.00004},
                        "scikit-learn KMeans (reference)": {"codes_used": 8, "perplexity": 7.654,
                                                            "relative_distortion": 0.30649}},
            "seconds": 2.4}
    lines = make_docs.render_codebook(data).splitlines()
    assert lines[0] == "*K = 8, 3 epochs, batch 16, dead-code threshold 1.0, seed 0; 2 s of compute*"
    assert lines[2:] == ["| setting | codes used | perplexity | rel. distortion |",
                         "|---|---:|---:|---:|",
                         "| EMA, random init | 1 | 1.0 | 1.000 |",
                         "| scikit-learn KMeans (reference floor) | 8 | 7.7 | 0.306 |"]


def test_vqgraph_renderer_formats_percent_mean_std():
    acc = {m: {"mean": v, "std": 0.0123} for m, v in
           [("teacher", 0.97411), ("mlp", 0.5), ("glnn", 0.9), ("vqgraph", 0.91236)]}
    data = {"datasets": {"toy": {"accuracy": {"transductive": acc},
                                 "codebook": {"codes_used": {"mean": 52.8}, "perplexity": {"mean": 34.71, "std": 6.38}},
                                 "codebook_size": 64, "seeds": 2}}}
    text = make_docs.render_vqgraph(data)
    assert "| transductive | 97.41 ± 1.23 | 50.00 ± 1.23 | 90.00 ± 1.23 | 91.24 ± 1.23 |" in text.splitlines()
    assert "codebook 53 of 64 codes used, perplexity 34.7 ± 6.4." in text


def test_reliability_renderer_counts_outcomes_per_category():
    records = [{"category": "bad values", "case": "a", "outcome": "clear"},
               {"category": "bad values", "case": "b | c", "outcome": "traceback", "detail": "rc=1: Boom"},
               {"category": "concurrency", "case": "d", "outcome": "clear"}]
    data = {"cases": 3, "seconds": 12.4, "records": records,
            "summary": {"clear": 2, "traceback": 1, "silent": 0}}
    lines = make_docs.render_reliability(data).splitlines()
    assert lines[0] == "*3 cases, 12 s*"
    assert lines[2:6] == ["| category | cases | clear errors | tracebacks | silent wrong outputs |",
                          "|---|---:|---:|---:|---:|",
                          "| bad values | 2 | 1 | 1 | 0 |",
                          "| concurrency | 1 | 1 | 0 | 0 |"]
    assert lines[6] == "| **total** | 3 | 2 | 1 | 0 |"
    assert lines[-1] == "| bad values | b \\| c | traceback | rc=1: Boom |"


def test_missing_optional_results_file_renders_a_note(tmp_path):
    load = make_docs.Loader(tmp_path)
    assert "Not measured yet" in make_docs.render_region("table", "reliability", load)
    with pytest.raises(FileNotFoundError, match="mirage.json"):
        make_docs.render_region("table", "mirage", load)


def test_check_fails_when_json_changes_without_regenerating(tmp_path):
    """Editing a results file without `make docs` is caught; regenerating fixes it."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "results" / "distillcore_codebook.json", tmp_path / "benchmarks" / "results")
    (tmp_path / "README.md").write_text("# x\n\nSee [docs](docs/core.md).\n")
    doc = tmp_path / "docs" / "core.md"
    doc.write_text("intro\n<!-- table:distillcore_codebook -->\n<!-- /table:distillcore_codebook -->\nend\n")
    assert make_docs.main(["--root", str(tmp_path)]) == 0          # fills the table in
    assert "| EMA, random init | 1 | 1.0 | 1.000 |" in doc.read_text()
    assert make_docs.main(["--root", str(tmp_path), "--check"]) == 0

    path = tmp_path / "benchmarks" / "results" / "distillcore_codebook.json"
    data = json.loads(path.read_text())
    data["results"]["EMA, random init"]["codes_used"] = 5
    path.write_text(json.dumps(data))
    assert make_docs.main(["--root", str(tmp_path), "--check"]) == 1
    assert "| EMA, random init | 1 |" in doc.read_text()              # --check changes nothing
    assert make_docs.main(["--root", str(tmp_path)]) == 0
    assert "| EMA, random init | 5 | 1.0 | 1.000 |" in doc.read_text()
    assert doc.read_text().startswith("intro\n") and doc.read_text().endswith("end\n")


def test_broken_relative_link_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("[ok](../README.md) [web](https://example.org) [anchor](#x) [bad](missing.md)\n"
                                            "```\n[in code](nowhere.md)\n```\n")
    (tmp_path / "README.md").write_text("[a](docs/a.md#section)\n")
    assert make_docs.broken_links(tmp_path) == ["docs/a.md: missing.md"]


def test_unknown_or_unclosed_marker_is_an_error(tmp_path):
    load = make_docs.Loader(ROOT / "benchmarks" / "results")
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        make_docs.update_text("<!-- table:nope --><!-- /table:nope -->", load)
    with pytest.raises(ValueError, match="no closing"):
        make_docs.update_text("<!-- table:mirage -->\n", load)
