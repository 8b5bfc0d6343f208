"""Regenerate the result tables and headline numbers in README.md and docs/*.md from benchmarks/results/*.json.

Every number a benchmark measured is written into the docs by this script, never by hand, so the docs
cannot drift from the JSON files. A doc marks a generated region with a pair of HTML comments:

    <!-- table:NAME -->  ... generated markdown ...  <!-- /table:NAME -->
    <!-- headline:NAME -->one generated sentence<!-- /headline:NAME -->

and NAME is a key of ``TABLES`` / ``HEADLINES`` below. Each entry names the results files it reads and
one small renderer (a function of the loaded JSON that returns markdown), so a renderer can be tested on
a synthetic dict.

    python tools/make_docs.py           # rewrite the generated regions (make docs)
    python tools/make_docs.py --check   # exit 1 if any doc is out of date or a relative link is broken

Standard library only: it runs before the package's dependencies are installed.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

# a marker written inside `code` (e.g. in the docs explaining markers) is text, not a marker
MARKER = re.compile(r"(?<!`)<!-- (table|headline):([\w.-]+) -->(.*?)<!-- /\1:\2 -->", re.DOTALL)
OPEN_MARKER = re.compile(r"(?<!`)<!-- (table|headline):([\w.-]+) -->")
# [text](target) links; images too. Absolute URLs and pure anchors are not files.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


# ---------------------------------------------------------------------------------------------- formatting

def md_table(header: list[str], rows: list[list[str]], align: list[str] | None = None) -> str:
    """A GitHub markdown table.

    Args:
        header: column titles.
        rows: one list of cell strings per row, each as long as ``header``.
        align: per column ``"l"`` or ``"r"`` (default: all left, written ``---``).
    """
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {row} has {len(row)} cells, header has {len(header)}")
    align = align or ["l"] * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pm(mean: float, std: float, digits: int = 1, scale: float = 1.0, sign: bool = False) -> str:
    """``mean ± std`` with ``digits`` decimals after multiplying both by ``scale``."""
    m = f"{mean * scale:+.{digits}f}" if sign else f"{mean * scale:.{digits}f}"
    return f"{m} ± {std * scale:.{digits}f}"


def ms(seconds: float) -> str:
    """Milliseconds with three significant figures below 100 ms, whole milliseconds above."""
    value = seconds * 1e3
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def count(n: float) -> str:
    """10000 -> 10k, 5029066 -> 5.0M."""
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e3:
        return f"{n / 1e3:.0f}k"
    return f"{n:.0f}"


def nbytes(n: float) -> str:
    """Decimal sizes as the Mirage table shows them: 1860480 -> 1.86 MB, 27064 -> 27 kB."""
    if n >= 1e6:
        return f"{n / 1e6:.3g} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{n:.0f} B"


def settings_line(text: str) -> str:
    return f"*{text}*\n\n"


# ---------------------------------------------------------------------------------------------- distillcore

def render_codebook(d: dict) -> str:
    """``distillcore_codebook.json``: codebook usage per quantizer setting."""
    s = d["study"]
    head = settings_line(f"K = {s['codebook_size']}, {s['epochs']} epochs, batch {s['batch_size']}, "
                         f"dead-code threshold {s['restart_threshold']}, seed {s['seed']}; "
                         f"{d['seconds']:.0f} s of compute")
    rows = [[name.replace("(reference)", "(reference floor)"), f"{r['codes_used']}", f"{r['perplexity']:.1f}",
             f"{r['relative_distortion']:.3f}"] for name, r in d["results"].items()]
    return head + md_table(["setting", "codes used", "perplexity", "rel. distortion"], rows, ["l", "r", "r", "r"])


def headline_codebook(d: dict) -> str:
    r = d["results"]
    k = d["study"]["codebook_size"]
    return (f"an EMA codebook with random init uses {r['EMA, random init']['codes_used']} of {k} codes on sklearn "
            f"digits; with dead-code restart it uses {r['EMA + dead-code restart']['codes_used']} (perplexity "
            f"{r['EMA + dead-code restart']['perplexity']:.1f})")


# ---------------------------------------------------------------------------------------------- rasterizer

def render_rasterize_cpu(d: dict) -> str:
    """``rasterize.json``: native and torch backends on the CPU."""
    c, m = d["config"], d["machine"]
    head = settings_line(f"{m['threads']} CPU threads, torch {m['torch']}, load average {m['load_average'][0]:.1f}; "
                         f"wall-clock medians of {c['repeats']} runs; Mblends/s/core = million composited "
                         f"(pixel, Gaussian) pairs per CPU-second")
    rows = []
    for r in d["rows"]:
        nat, tor = r["native"], r.get("torch")
        sp = r.get("speedup_native_vs_torch")
        before = r.get("speedup_vs_baseline")
        rows.append([count(r["n_gaussians"]), f"{r['size']}²", str(r["channels"]),
                     ms(nat["forward_s"]), ms(nat["forward_backward_s"]),
                     ms(tor["forward_s"]) if tor else "-", ms(tor["forward_backward_s"]) if tor else "-",
                     f"{sp['forward_cpu']:.0f}x, {sp['forward_backward_cpu']:.0f}x" if sp else "-",
                     f"{nat['forward_blends_per_s_per_core'] / 1e6:.0f}, "
                     f"{nat['forward_backward_blends_per_s_per_core'] / 1e6:.0f}",
                     f"{before['forward_cpu']:.2f}x, {before['forward_backward_cpu']:.2f}x" if before else "-"])
    if any(r.get("speedup_vs_baseline") for r in d["rows"]):
        base = d.get("baseline", {})
        head += (f"Previous kernels: the same script on the tree of {base.get('tree', 'the previous commit')}; "
                 "\"before/now\" is the ratio of their CPU times (above 1: now faster).\n\n")
    return head + md_table(["N", "image", "D", "native fwd", "native fwd+bwd", "torch fwd", "torch fwd+bwd",
                            "torch/native (CPU time) fwd, f+b", "native Mblends/s/core fwd, f+b",
                            "before/now (CPU time) fwd, f+b"], rows)


RASTERIZE_STAGES = (("project", "projection"), ("isect_sort", "tile binning + depth sort"), ("offsets", "tile offsets"),
                    ("composite", "compositing"), ("other", "rest of the call"), ("project_backward", "projection bwd"),
                    ("composite_backward", "compositing bwd"))


def render_rasterize_stages(d: dict) -> str:
    """``rasterize.json``: where the native CPU time goes, per stage (each stage timed alone on the same inputs)."""
    rows = []
    for r in d["rows"]:
        stages = r["native"].get("stages")
        if not stages:
            continue
        forward = sum(stages[k]["cpu_s"] for k in ("project", "isect_sort", "offsets", "composite", "other"))
        rows.append([count(r["n_gaussians"]), f"{r['size']}²", str(r["channels"])]
                    + [f"{stages[k]['cpu_s'] * 1e3:.0f}" for k, _ in RASTERIZE_STAGES]
                    + [f"{r['blends'] / stages['composite']['cpu_s'] / 1e6:.0f}", f"{r['blends'] / forward / 1e6:.0f}"])
    return md_table(["N", "image", "D", *(f"{label} (CPU ms)" for _, label in RASTERIZE_STAGES),
                     "compositing alone Mblends/s/core", "forward stages Mblends/s/core"], rows)


def render_rasterize_cuda(d: dict) -> str:
    """``rasterize_cuda.json``: native CUDA kernels against gsplat, same scenes."""
    c, m = d["config"], d["machine"]
    head = settings_line(f"{m.get('gpu', 'GPU')}, torch {m['torch']}; wall-clock medians of {c['repeats']} runs; "
                         f"gsplat/native = gsplat's time over ours (below 1: gsplat is faster)")
    rows, fwd, fb = [], [], []
    for r in d["rows"]:
        nat, gs = r["native"], r.get("gsplat")
        sp = r.get("speedup_native_vs_gsplat")
        if sp:
            fwd.append(sp["forward"])
            fb.append(sp["forward_backward"])
        rows.append([count(r["n_gaussians"]), f"{r['size']}²", str(r["channels"]),
                     ms(nat["forward_s"]), ms(nat["forward_backward_s"]),
                     ms(gs["forward_s"]) if gs else "-", ms(gs["forward_backward_s"]) if gs else "-",
                     f"{sp['forward']:.2f}x, {sp['forward_backward']:.2f}x" if sp else "-"])
    table = md_table(["N", "image", "D", "native fwd", "native fwd+bwd", "gsplat fwd", "gsplat fwd+bwd",
                      "gsplat/native fwd, f+b"], rows)
    if fwd:
        table += (f"\n\nOver the {len(fwd)} rows: forward {min(fwd):.2f}-{max(fwd):.2f}x "
                  f"(median {statistics.median(fwd):.2f}x), forward+backward {min(fb):.2f}-{max(fb):.2f}x "
                  f"(median {statistics.median(fb):.2f}x).")
    return head + table


def _row(d: dict, n: int, size: int, channels: int) -> dict:
    for r in d["rows"]:
        if (r["n_gaussians"], r["size"], r["channels"]) == (n, size, channels):
            return r
    raise KeyError(f"no row N={n} size={size} D={channels}")


def headline_rasterize(cpu: dict, cuda: dict) -> str:
    r = _row(cpu, 1_000_000, 512, 16)
    g = _row(cuda, 100_000, 512, 16)
    return (f"1M Gaussians at 512², D = 16: {ms(r['native']['forward_s'])} forward, "
            f"{ms(r['native']['forward_backward_s'])} forward+backward "
            f"on {cpu['machine']['threads']} CPU threads; 100k Gaussians at 512², D = 16 on an "
            f"{cuda['machine'].get('gpu', 'GPU')}: {ms(g['native']['forward_s'])} (gsplat "
            f"{ms(g['gsplat']['forward_s'])})")


# ---------------------------------------------------------------------------------------------- Feature 3DGS

TEACHER_DIMS = {"efficientnet-lite0": 112, "efficientnet-lite0-s8": 40, "xfeat": 64, "disk": 128}


def render_feature3dgs(d: dict) -> str:
    """``feature3dgs.json``: plain 3DGS, Feature 3DGS and the speed-up decoder on the default scene."""
    r = d["rows"]
    h, w = d["resolution"]
    dim = TEACHER_DIMS.get(d["teacher"])
    head = settings_line(f"default scene at {w}x{h} (downscale {d['downscale']}), teacher {d['teacher']}, "
                         f"{d['steps']} steps, {d['initial_points']} initial points, {d['device']}, "
                         f"{d['torch_threads']} torch threads")

    def field(name: str, label: str, fps_note: str = "") -> list[str]:
        x = r[name]
        cos = f"{x['feature_cosine']:.3f}" if "feature_cosine" in x else "-"
        miou = f"{x['miou']:.3f}" if "miou" in x else "-"
        return [label, f"{x['psnr']:.2f}", f"{x['ssim']:.3f}", cos, miou, f"{x['train_seconds']:.0f}",
                f"{x['render_fps']:.0f}{fps_note}"]

    rows = [["teacher's own map of the held-out image", "-", "-", "-", f"{r['teacher']['miou']:.3f}", "-", "-"],
            field("plain", "plain 3DGS", " (RGB only)"),
            field("feature", f"Feature 3DGS (D = {dim})" if dim else "Feature 3DGS"),
            field("decoder", f"+ speed-up decoder (D_low = {d['decoder_low_dim']})")]
    table = md_table(["field", "held-out PSNR", "SSIM", "feature cos", "query mIoU", "train s", "render FPS"], rows)
    gap = r["feature"]["psnr"] - r["plain"]["psnr"]
    table += (f"\n\nPSNR with features minus plain: {gap:+.2f} dB; decoder "
              f"{d['decoder_speedup']:.1f}x faster to render, {d['decoder_miou_drop_points']:.1f} mIoU points lower.")
    return head + table


def _decoder_widths(d: dict) -> list[tuple[int, str]]:
    """(D_low, row name) of every decoder row, narrowest first."""
    widths = {d["decoder_low_dim"]: "decoder"} if "decoder" in d["rows"] else {}
    widths.update({int(k.split("_")[1]): k for k in d["rows"] if k.startswith("decoder_")})
    return sorted(widths.items())


def render_feature3dgs_decoder(d: dict) -> str:
    """``feature3dgs.json``: the speed-up decoder at every rendered width, and the feature render time of D
    against D_low channels on one trained geometry (widths interleaved, fastest of the rounds)."""
    r = d["rows"]
    dim = TEACHER_DIMS.get(d["teacher"], "D")
    full = r["feature"]
    rows = [[f"Feature 3DGS (D = {dim})", f"{full['psnr']:.2f}", f"{full['feature_cosine']:.3f}", f"{full['miou']:.3f}",
             "-", f"{full['train_seconds']:.0f}"]]
    for low, name in _decoder_widths(d):
        x = r[name]
        rows.append([f"decoder trained, D_low = {low}", f"{x['psnr']:.2f}", f"{x['feature_cosine']:.3f}",
                     f"{x['miou']:.3f}", f"{100 * (x['miou'] - full['miou']):+.1f}", f"{x['train_seconds']:.0f}"])
    for low in sorted(int(k.split("_")[1]) for k in r if k.startswith("compressed_")):
        x = r[f"compressed_{low}"]
        rows.append([f"Feature 3DGS compressed after training, D_low = {low}", f"{x['psnr']:.2f}",
                     f"{x['feature_cosine']:.3f}", f"{x['miou']:.3f}", f"{100 * (x['miou'] - full['miou']):+.1f}", "-"])
    table = md_table(["field", "held-out PSNR", "feature cos", "query mIoU", "mIoU - Feature 3DGS (points)",
                      "train s"], rows)
    speed = d.get("feature_render_speed")
    if speed:
        lows = [low for low, _ in _decoder_widths(d)]
        srows = []
        for size, modes in speed.items():
            if not size.isdigit():  # "rounds", "prototypes", "load_average"
                continue
            for mode, label in (("rgb_and_features", "RGB + features, decoded"),
                                ("features_only", "features (+ depth), decoded"),
                                ("render_only", "features (+ depth), not decoded"),
                                ("segmentation", "features (+ depth), segmented")):
                if mode not in modes:
                    continue
                t = modes[mode]["seconds_per_view"]
                srows.append([f"{size}²", label, ms(t[str(dim)])]
                             + [f"{ms(t[str(k)])} ({modes[mode]['speedup'][str(k)]:.2f}x)" if str(k) in t else "-"
                                for k in lows])
        load = (f", {speed.get('clock', 'wall-clock time')}"
                + (f", load average {speed['load_average'][0]:.1f}" if "load_average" in speed else ""))
        segmented = (f" A segmented pass labels each pixel by the nearest of {speed['prototypes']} class "
                     "prototypes; a D_low field is scored without decoding (the prototypes folded into D_low, "
                     "`SpeedUpDecoder.fold_queries`)."
                     if "prototypes" in speed else "")
        table += ("\n\nRender time per view of the trained Feature 3DGS geometry with its D features and compressed "
                  f"to D_low channels plus the 1x1 decode (speed-up in brackets; fastest of {speed.get('rounds', 3)} "
                  f"rounds, widths interleaved{load}).{segmented}\n\n"
                  + md_table(["image", "pass", f"D = {dim}", *(f"D_low = {k}" for k in lows)], srows))
    return table


def render_huge_pages(without: dict, with_: dict) -> str:
    """``feature3dgs_speed_without_thp.json`` and ``feature3dgs.json``: the same speed table with torch's
    huge-page allocation off and on (two runs of the same field)."""
    a, b = without["feature_render_speed"], with_["feature_render_speed"]
    dim = TEACHER_DIMS[with_["teacher"]]
    low = str(with_["decoder_low_dim"])
    rows = []
    for size in sorted((k for k in b if k.isdigit() and k in a and "render_only" in b[k] and "render_only" in a[k]), key=int):
        for mode, width, label in (("render_only", str(dim), f"render, {dim} feature channels"),
                                   ("features_only", low, f"render, {low} channels, then the 1x1 decode to {dim}"),
                                   ("render_only", low, f"render, {low} channels, not decoded")):
            off, on = a[size][mode]["seconds_per_view"][width], b[size][mode]["seconds_per_view"][width]
            rows.append([f"{size}²", label, ms(off), ms(on), f"{off / on:.2f}x"])
    loads = f"load average {a['load_average'][0]:.1f} and {b['load_average'][0]:.1f}"
    return (settings_line(f"{a.get('clock', 'wall-clock time')} per view, fastest of {b.get('rounds', 3)} rounds; {loads}")
            + md_table(["image", "pass", "THP_MEM_ALLOC_ENABLE=0", "=1 (default)", "faster"], rows))


def render_feature3dgs_outdoor(*files: dict) -> str:
    """``feature3dgs_outdoor*.json``: a scene photographed with its surroundings (no alpha), trained as from
    photos; one row per run, labelled by its densification interval."""
    d = files[0]
    h, w = d["resolution"]
    head = settings_line(f"outdoor recipe at {w}x{h} (downscale {d['downscale']}), teacher {d['teacher']}, "
                         f"{d['initial_points']} random initial points and a sky sphere, "
                         f"{d['torch_threads']} torch thread(s); {d['segmentation_protocol']}")
    rows = [["teacher's own map of the held-out image", "-", "-", f"{d['rows']['teacher']['miou']:.3f}", "-", "-", "-"]]
    notes = []
    labels = {"plain": "plain 3DGS", "feature": "Feature 3DGS", "decoder": "+ speed-up decoder"}
    for run in files:
        every = run["override"].get("densify", {}).get("refine_every", max(1, run["steps"] // 12))
        for name, field_label in labels.items():
            if name not in run["rows"]:
                continue
            x = run["rows"][name]
            label = f"{field_label}, {run['steps']} steps, densified every {every}"
            bound = "at most " if x.get("seconds_to_30db_from") == "mean time per step" else ""  # an over-estimate
            reached = (f"{x['steps_to_30db']} ({bound}{x['seconds_to_30db'] / 60:.0f} min)" if x.get("steps_to_30db")
                       else "not reached")
            rows.append([label, f"{x['psnr']:.2f}", f"{x['ssim']:.3f}", f"{x['miou']:.3f}" if "miou" in x else "-",
                         count(x["num_gaussians"]), f"{x['train_seconds'] / 60:.0f}", reached])
            if x.get("psnr_curve"):
                notes.append(f"{label}, held-out PSNR along training (step: dB): "
                             + ", ".join(f"{c['step']}: {c['psnr']:.1f}" for c in x["psnr_curve"]))
            if x.get("region_psnr"):
                notes.append(f"{label}, held-out PSNR per region: " + ", ".join(
                    f"{k.replace('_', ' and ')} {v['psnr']:.1f} dB ({100 * v['pixel_share']:.0f}% of the pixels, "
                    f"{100 * v['error_share']:.0f}% of the error)" for k, v in x["region_psnr"].items()))
    table = md_table(["field", "held-out PSNR", "SSIM", "query mIoU", "Gaussians", "train min", "steps to 30 dB"], rows)
    return head + table + "".join("\n\n" + note for note in notes)


def headline_feature3dgs(d: dict) -> str:
    r = d["rows"]
    h, w = d["resolution"]
    return (f"query mIoU {r['feature']['miou']:.3f} from the rendered features against {r['teacher']['miou']:.3f} "
            f"for the teacher's own maps, at {r['feature']['psnr']:.2f} dB held-out PSNR "
            f"(plain 3DGS {r['plain']['psnr']:.2f} dB; default scene at {w}x{h}, {d['steps']} steps)"
            + _compressed_headline(d))


def _compressed_headline(d: dict) -> str:
    """The D_low = 16 compressed field's mIoU and its segmentation-query speed-up at the largest size timed."""
    speed = d.get("feature_render_speed", {})
    sizes = [k for k in speed if k.isdigit() and "segmentation" in speed[k]]
    if "compressed_16" not in d["rows"] or not sizes:
        return ""
    size = max(sizes, key=int)
    return (f"; compressed to 16 channels, mIoU {d['rows']['compressed_16']['miou']:.3f} and a segmentation query "
            f"{speed[size]['segmentation']['speedup']['16']:.1f}x faster at {size}²")


# ---------------------------------------------------------------------------------------------- PointDistiller

PD_LABELS = {"teacher": "teacher", "student+none": "student, no KD", "student+kd": "student + response KD",
             "student+fitnet": "student + FitNet", "student+pointdistiller": "student + PointDistiller"}


def _pd_config_line(c: dict, seeds: int) -> str:
    split = c.get("eval_split", "val")
    scans = c.get("eval_scans", c.get("val_scans"))
    ious = " / ".join(str(t) for t in c["iou_thresholds"])
    return settings_line(f"{c['steps']} steps per model, {c['train_scans']} training scans, scored on {scans} "
                         f"{split} scans; students at width {c['student_width']}; {c['difficulty']} difficulty, "
                         f"AP R40 over {' / '.join(c['classes'])} at IoU {ious}; {c['threads']} torch "
                         f"thread{'s' if c['threads'] != 1 else ''}; up to {seeds} seeds per student")


def render_pointdistiller(d: dict) -> str:
    """``pointdistiller*.json``: teacher and width-reduced students per detector family."""
    out = []
    for family, models in d["families"].items():
        rows = []
        for key, m in models.items():
            multi = m["seeds"] > 1
            bev = pm(m["mAP_bev_mean"], m["mAP_bev_std"]) if multi else f"{m['mAP_bev_mean']:.1f}"
            d3 = pm(m["mAP_3d_mean"], m["mAP_3d_std"]) if multi else f"{m['mAP_3d_mean']:.1f}"
            dbev = pm(m["delta_vs_none_bev_mean"], m["delta_vs_none_bev_std"], sign=True) \
                if "delta_vs_none_bev_mean" in m else ""
            d3d = pm(m["delta_vs_none_3d_mean"], m["delta_vs_none_3d_std"], sign=True) \
                if "delta_vs_none_3d_mean" in m else ""
            rows.append([PD_LABELS.get(key, key), str(m["seeds"]), count(m["params"]), f"{m['gflops']:.3f}",
                         f"{m['ms_per_scan']:.1f} ({m['speedup_vs_teacher']:.1f}x)", bev, d3, dbev, d3d])
        out.append(md_table([f"model ({family})", "seeds", "params", "GFLOPs", "CPU ms/scan", "BEV mAP", "3D mAP",
                             "BEV vs no KD (paired)", "3D vs no KD (paired)"], rows))
        per_seed = [f"{PD_LABELS.get(k, k)} " + " / ".join(f"{a['mAP/bev/' + d['config']['difficulty']]:.1f}"
                                                          for a in m["ap"])
                    for k, m in models.items() if m["seeds"] > 1]
        if per_seed:
            out.append("Per seed (BEV mAP): " + "; ".join(per_seed) + ".")
    scaling = d.get("speed_scaling")
    if scaling and "pillars" in d["families"]:
        rows = [[name, count(s["teacher_params"]), count(s["student_params"]), f"{s['teacher_forward_ms']:.1f}",
                 f"{s['student_forward_ms']:.1f}", f"{s['speedup']:.1f}x"] for name, s in scaling.items()]
        out.append("Speed scaling, teacher against student (untrained weights; inference copies with BatchNorm "
                   "folded, `distill3d.points.fusion`; preprocess + forward, 1 thread):\n\n"
                   + md_table(["teacher", "teacher params", "student params", "teacher ms", "student ms",
                               "speed-up"], rows))
    return _pd_config_line(d["config"], max(m["seeds"] for f in d["families"].values() for m in f.values())) \
        + "\n\n".join(out)


def headline_pointdistiller(d: dict) -> str:
    fam = d["families"]["pillars"]
    t, s, n = fam["teacher"], fam["student+pointdistiller"], fam["student+none"]
    return (f"a pillar detector with {t['params'] / s['params']:.1f}x fewer parameters reaches {pm(s['mAP_bev_mean'], s['mAP_bev_std'])} "
            f"BEV mAP with PointDistiller against {pm(n['mAP_bev_mean'], n['mAP_bev_std'])} without KD "
            f"(teacher {t['mAP_bev_mean']:.1f}; simulated LiDAR, {s['seeds']} seeds)")


# ---------------------------------------------------------------------------------------------- PRD

PRD_FULL_COLUMNS = ["novel PSNR", "novel SSIM", "relit PSNR", "relit aligned", "relit SSIM",
                    "albedo PSNR (aligned)", "normal error (deg)", "mean progress (objects)"]


def _prd_label(key: str) -> str:
    if key == "prd":
        return "(a) PRD"
    if key.startswith("prd_progress_init_"):
        return f"(a) PRD, progress map starting at {key.rsplit('_', 1)[1]}"
    if key == "alpha_one":
        return "(b) same physical model, alpha_p = 1"
    if key == "plain_3dgs":
        return "(c) plain 3DGS (the shared pre-training)"
    return key


def _prd_order(scene: dict) -> list[str]:
    variants = sorted(k for k in scene if k.startswith("prd_progress_init_"))
    return [k for k in ["prd", *variants, "alpha_one", "plain_3dgs"] if k in scene]


def _prd_size_line(d: dict, extra: str = "") -> str:
    s = d["size"]
    stages = " + ".join(map(str, s["stage_steps"])) + " physical steps" if s["stage_steps"] \
        else "the physical stages' steps of `PRDConfig`"
    text = (f"{d['mode']} size: downsample {s['downsample']}, {s['radiance_steps']} radiance steps, {stages}, "
            f"{s['num_points']} initial points")
    if d.get("settings"):
        text += "; settings " + ", ".join(f"`{k}={v}`" for k, v in d["settings"].items())
    return settings_line(text + extra)


def render_prd_full(d: dict) -> str:
    """``prd_full*.json``: every method of every scene in the file, all image metrics."""
    out = []
    for name, scene in d["scenes"].items():
        h, w = scene["resolution"]
        rows = []
        for key in _prd_order(scene):
            r = scene[key]
            if key == "plain_3dgs":
                rows.append([_prd_label(key), f"{r['novel_psnr']:.2f}", f"{r['novel_ssim']:.3f}"] + ["-"] * 6)
                continue
            rows.append([_prd_label(key), f"{r['novel_psnr']:.2f}", f"{r['novel_ssim']:.3f}", f"{r['relit_psnr']:.2f}",
                         f"{r['relit_psnr_aligned']:.2f}", f"{r['relit_ssim']:.3f}", f"{r['albedo_psnr']:.2f}",
                         f"{r['normal_error_deg']:.1f}", f"{r['mean_progress_objects']:.2f}"])
        out.append(md_table([f"method ({name} scene, {w}x{h}, {scene['test_views']} test views)"] + PRD_FULL_COLUMNS,
                            rows))
    return _prd_size_line(d) + "\n\n".join(out)


def render_prd_quick(d: dict) -> str:
    """``prd.json``: the quick size, every scene in one table."""
    rows = []
    short = {"prd": "(a) PRD", "alpha_one": "(b) alpha_p = 1", "plain_3dgs": "(c) plain 3DGS"}
    for name, scene in d["scenes"].items():
        for key in _prd_order(scene):
            r = scene[key]
            label = f"{name} {short.get(key, _prd_label(key))}"
            if key == "plain_3dgs":
                rows.append([label, f"{r['novel_psnr']:.2f}"] + ["-"] * 5)
                continue
            rows.append([label, f"{r['novel_psnr']:.2f}", f"{r['relit_psnr']:.2f}", f"{r['relit_psnr_aligned']:.2f}",
                         f"{r['albedo_psnr']:.2f}", f"{r['normal_error_deg']:.1f}", f"{r['mean_progress_objects']:.2f}"])
    return _prd_size_line(d) + md_table(
        [f"method, {d['mode']} size", "novel PSNR", "relit PSNR", "relit aligned", "albedo PSNR (aligned)",
         "normal error (deg)", "mean progress (objects)"], rows)


def render_prd_oracles(*files: dict) -> str:
    """Relit PSNR with ground truth swapped in, for (a) and (b) of every scene in the given files."""
    rows = []
    for d in files:
        for name, scene in d["scenes"].items():
            for key in ("prd", "alpha_one"):
                o = scene[key]["oracles"]
                rows.append([f"{name} {_prd_label(key).split(',')[0]}", f"{o['relit_psnr_model']:.2f}",
                             f"{o['relit_psnr_gt_normals']:.2f}", f"{o['relit_psnr_albedo_rescaled']:.2f}",
                             f"{o['relit_psnr_gt_albedo']:.2f}", f"{o['relit_psnr_gt_materials']:.2f}",
                             f"{o['relit_psnr_gt_albedo_in_shadows']:.2f}"])
    return md_table(["scene, method", "model", "GT normals", "albedo rescaled per channel", "GT albedo",
                     "GT albedo, roughness, metallic, normals", "GT albedo in cast shadows only"], rows)


def render_prd_shadows(*files: dict) -> str:
    """Cast shadows: how much of the objects they cover, what the albedo and progress map do there."""
    rows = []
    for d in files:
        for name, scene in d["scenes"].items():
            for key in ("prd", "alpha_one"):
                o = scene[key]["oracles"]
                rows.append([f"{name} {_prd_label(key).split(',')[0]}", f"{o['shadow_fraction'] * 100:.1f}%",
                             f"{o['albedo_brightness_shadows']:.2f}", f"{o['albedo_brightness_lit']:.2f}",
                             f"{o['mean_progress_shadows']:.2f}", f"{o['mean_progress_lit']:.2f}"])
    return md_table(["scene, method", "object pixels in cast shadow", "albedo / true albedo in shadow",
                     "albedo / true albedo lit", "progress in shadow", "progress lit"], rows)


PRD_SEED_METHODS = {"prd": "(a) PRD", "alpha_one": "(b) alpha_p = 1", "prd_visibility": "(a) PRD, visibility",
                    "alpha_one_visibility": "(b) alpha_p = 1, visibility", "plain_3dgs": "(c) plain 3DGS"}


def render_prd_seeds(d: dict) -> str:
    """``prd_interreflect.json``: every scene and run over the seeds (mean, and the spread max - min when there
    are several), then (a) - (b) per seed against that spread."""
    seeds = len(d["seeds"])

    def cell(stats: dict | None, digits: int) -> str:
        if stats is None or stats["mean"] is None:  # e.g. a correlation with a constant progress map (b)
            return "-"
        if seeds == 1:
            return f"{stats['mean']:.{digits}f}"
        return f"{stats['mean']:.{digits}f} ({stats['spread']:.{digits}f})"

    rows, gaps = [], []
    for name, scene in d["scenes"].items():
        summary = scene["seed_summary"]
        for key, label in PRD_SEED_METHODS.items():
            if key not in summary:
                continue
            m = summary[key]
            rows.append([f"{name} {label}", cell(m.get("novel_psnr"), 2), cell(m.get("relit_psnr_aligned"), 2),
                         cell(m.get("albedo_psnr"), 2), cell(m.get("oracles.albedo_brightness_shadows"), 2),
                         cell(m.get("fallback.correlation_1_minus_progress_vs_unmodelled"), 2)])
        for suffix, label in (("", "without visibility"), ("_visibility", "with visibility")):
            a, b = summary.get("prd" + suffix), summary.get("alpha_one" + suffix)
            if a is None or b is None:
                continue
            for metric, metric_label in (("relit_psnr_aligned", "relit aligned"), ("albedo_psnr", "albedo PSNR")):
                diffs = [x - y for x, y in zip(a[metric]["values"], b[metric]["values"])]
                spread = max(a[metric]["spread"], b[metric]["spread"])
                gaps.append([f"{name}, {label}", metric_label, " / ".join(f"{v:+.2f}" for v in diffs),
                             f"{spread:.2f}", "yes" if seeds > 1 and min(diffs) > spread else "no"])
    spread_note = " (spread over seeds, max - min)" if seeds > 1 else ""
    table = md_table(["scene, run", f"novel PSNR{spread_note}", "relit aligned", "albedo PSNR (aligned)",
                      "albedo / true albedo in cast shadows", "corr(1 - progress, unmodelled share)"], rows)
    gap_table = md_table(["scene", "metric", "(a) - (b) per seed", "larger spread of (a), (b)",
                          "(a) above (b) beyond the spread"], gaps)
    return _prd_size_line(d, f"; seeds {', '.join(map(str, d['seeds']))}") + table + "\n\n" + gap_table


SETTING_LABELS = {"stages.light_weight": "no neutral-light prior", "optim.light_lr": "light learning rate",
                  "model.init.albedo": "grey initial albedo"}


def render_prd_settings(files: dict[str, dict]) -> str:
    """One row per results file of the same scene: (a) and (b) relit PSNR under each ``--set``."""
    rows = []
    for fname, d in files.items():
        settings = d.get("settings") or {}
        if settings:
            label = ", ".join(f"{SETTING_LABELS.get(k, k)} (`--set {k}={v}`)" for k, v in settings.items())
        else:
            label = "defaults"
        for name, scene in d["scenes"].items():
            a, b = scene["prd"], scene["alpha_one"]
            rows.append([label, name, f"{a['relit_psnr']:.2f}", f"{b['relit_psnr']:.2f}",
                         f"{a['relit_psnr'] - b['relit_psnr']:+.2f}", f"{a['novel_psnr']:.2f}",
                         f"{a['mean_progress_objects']:.2f}", f"`{fname}`"])
    return md_table(["setting", "scene", "(a) relit", "(b) relit", "(a) - (b)", "(a) novel",
                     "(a) progress (objects)", "results"], rows)


def headline_prd(d: dict) -> str:
    s = d["scenes"]["default"]
    a, b, c = s["prd"], s["alpha_one"], s["plain_3dgs"]
    return (f"relightable materials at {a['novel_psnr']:.2f} dB novel-view PSNR (plain 3DGS {c['novel_psnr']:.2f}); "
            f"relit under a new light {a['relit_psnr']:.2f} dB, against {b['relit_psnr']:.2f} dB without the "
            f"radiance fallback (default scene, {d['mode']} size)")


# ---------------------------------------------------------------------------------------------- VQGraph

VQ_DATASETS = {"digits": "digits", "sbm": "SBM (homophily 0.8, noisy features)", "karate": "karate",
               "atoms": "atoms of 500 NCI molecules (label: ring system)"}
VQ_METHODS = [("teacher", "teacher GNN"), ("mlp", "MLP"), ("glnn", "GLNN"), ("vqgraph", "VQGraph")]
VQ_CEILING = ("ceiling", "MLP, all labels (features-only ceiling)")


def render_vqgraph(d: dict) -> str:
    """``vqgraph.json``: test accuracy per data set and setting, codebook usage, inference latency."""
    out = []
    for name, ds in d["datasets"].items():
        cfg = d.get("config", {}).get(name, {})
        methods = VQ_METHODS + ([VQ_CEILING] if "gap_closed" in ds else [])
        rows = [[setting] + [pm(acc[m]["mean"], acc[m]["std"], 2, 100.0) for m, _ in methods]
                for setting, acc in ds["accuracy"].items()]
        table = md_table([VQ_DATASETS.get(name, name)] + [label for _, label in methods], rows)
        cb = ds["codebook"]
        teacher = cfg.get("teacher", {})
        table += (f"\n\n{name}: {ds['seeds']} seeds, {teacher.get('architecture', 'GNN').upper()} teacher; codebook "
                  f"{cb['codes_used']['mean']:.0f} of {ds['codebook_size']} codes used, perplexity "
                  f"{pm(cb['perplexity']['mean'], cb['perplexity']['std'])}.")
        if "gap_closed" in ds:
            table += ("\n\nShare of the few-label MLP's gap to the features-only ceiling closed by the students: "
                      + "; ".join(f"{setting} " + ", ".join(f"{m} {pm(v['mean'], v['std'], 1, 100.0)}%" for m, v in per.items())
                                  for setting, per in ds["gap_closed"].items()) + ".")
        out.append(table)
    lat = d.get("latency")
    if lat:
        out.append(f"Inductive inference of {lat['nodes_timed']} nodes of a {count(lat['num_nodes'])}-node graph "
                   f"({count(lat['num_edges'])} edges), one node at a time, {lat['torch_threads']} torch thread: "
                   f"teacher ({lat['hops']}-hop subgraph + GNN, {lat['mean_neighbourhood_size']:.0f} nodes on "
                   f"average) {lat['teacher_ms']:.0f} ms, student MLP {lat['student_ms']:.2f} ms, "
                   f"{lat['speedup']:.0f}x faster.")
    return settings_line("test accuracy %, mean ± std over seeds") + "\n\n".join(out)


def headline_vqgraph(d: dict) -> str:
    acc = d["datasets"]["digits"]["accuracy"]["transductive"]
    lat = d["latency"]
    return (f"an MLP that needs no graph reaches {acc['vqgraph']['mean'] * 100:.2f}% on digits (transductive; "
            f"plain MLP {acc['mlp']['mean'] * 100:.2f}%, GNN teacher {acc['teacher']['mean'] * 100:.2f}%) and answers "
            f"{lat['speedup']:.0f}x faster than the teacher on a {count(lat['num_nodes'])}-node graph")


# ---------------------------------------------------------------------------------------------- Mirage

MIRAGE_MODELS = ["gcn", "gin", "gat"]


def render_mirage(d: dict) -> str:
    """``mirage.json``: test ROC-AUC of GNNs trained on the full, Mirage-distilled, random and k-centre sets."""
    t = d["setup"]["train"]
    head = settings_line(f"{d['setup']['seeds']} seeds, {t['epochs']} epochs of {t['samples_per_epoch']} samples; "
                         f"test ROC-AUC, mean ± std; sizes are tensor payloads, the random subset and the k-centre "
                         f"coreset have the bytes of the Mirage set as PyG's int64 tensors, the compact-bytes "
                         f"random subset as the Mirage file counts its own (integers in their smallest dtype)")
    coreset = any("gcn/kcenter" in ds["summary"] for ds in d["datasets"].values())
    covered = any("gcn/covered" in ds["summary"] for ds in d["datasets"].values())
    compact = any("gcn/random_compact" in ds["summary"] for ds in d["datasets"].values())
    rows = []
    for name, ds in d["datasets"].items():
        s = ds["summary"]
        for i, model in enumerate(m for m in MIRAGE_MODELS if f"{m}/full" in s):
            first = i == 0
            rows.append([
                name if first else "",
                f"{ds['train_graphs']} graphs, {nbytes(ds['original_bytes'])} → {ds['patterns']} patterns, "
                f"{nbytes(ds['distilled_bytes'])}" if first else "",
                (f"{ds['compression_ratio']:.0f}x" + (f" / {ds['compact_compression_ratio']:.1f}x"
                                                       if "compact_compression_ratio" in ds else "")) if first else "",
                f"{ds['distill_cpu_seconds']:.2f} s" if first else "",
                model.upper(),
                pm(s[f"{model}/full"]["roc_auc"]["mean"], s[f"{model}/full"]["roc_auc"]["std"], 3),
                pm(s[f"{model}/mirage"]["roc_auc"]["mean"], s[f"{model}/mirage"]["roc_auc"]["std"], 3),
                pm(s[f"{model}/random"]["roc_auc"]["mean"], s[f"{model}/random"]["roc_auc"]["std"], 3)]
                + ([pm(s[f"{model}/kcenter"]["roc_auc"]["mean"], s[f"{model}/kcenter"]["roc_auc"]["std"], 3)] if coreset else [])
                + [f"{s[f'{model}/mirage_over_full']:.2f}"]
                + ([pm(s[f"{model}/covered"]["roc_auc"]["mean"], s[f"{model}/covered"]["roc_auc"]["std"], 3),
                    f"{s[f'{model}/covered_over_full']:.2f}"] if covered else [])
                + ([pm(s[f"{model}/random_compact"]["roc_auc"]["mean"], s[f"{model}/random_compact"]["roc_auc"]["std"], 3)]
                   if compact else []))
    ratio = "ratio (PyG / compact)" if any("compact_compression_ratio" in ds for ds in d["datasets"].values()) else "ratio"
    table = md_table(["data set", "train → distilled", ratio, "distill CPU", "model", "full", "Mirage", "random"]
                     + (["k-centre"] if coreset else []) + ["Mirage/full"]
                     + (["Mirage, covered readout", "covered/full"] if covered else [])
                     + (["random, compact bytes"] if compact else []), rows,
                     ["l", "l", "r", "r", "l", "r", "r", "r"] + (["r"] if coreset else []) + ["r"]
                     + (["r", "r"] if covered else []) + (["r"] if compact else []))
    h = d.get("hashing")
    if h:
        table += (f"\n\nDepth-{h['depth']} tree hashing of {h['nodes']:,} nodes ({h['edges']:,} edges): "
                  f"{h['cpu_seconds']:.2f} s of CPU on one thread, {h['nodes_per_second'] / 1e3:.0f}k nodes/s, "
                  f"{h['distinct_trees']:,} distinct trees.")
    return head + table


def render_mirage_budget(d: dict) -> str:
    """``mirage.json`` ``budgets``: Mirage within N x of the training set, both counted in compact bytes, against
    a random subset of the training graphs of the same compact bytes."""
    head = settings_line(f"{d['setup']['seeds']} seeds, test ROC-AUC, mean ± std; the training graphs and the set both "
                         f"counted with every integer in its smallest dtype; the random subset has the set's bytes")
    rows = []
    for name, ds in d["datasets"].items():
        for j, (ratio, budget) in enumerate(ds.get("budgets", {}).items()):
            for i, model in enumerate(MIRAGE_MODELS):
                mirage, random = budget["summary"][f"{model}/mirage"], budget["summary"][f"{model}/random_compact"]
                full = ds["summary"][f"{model}/full"]["roc_auc"]["mean"]
                runs = [(budget["runs"][f"{model}/mirage/{k}"]["test_roc_auc"], budget["runs"][f"{model}/random_compact/{k}"]["test_roc_auc"])
                        for k in range(d["setup"]["seeds"])]
                gap = [a - b for a, b in runs]
                rows.append([
                    name if i == j == 0 else "",
                    f"≥ {ratio}x: {budget['patterns']} patterns, {nbytes(budget['distilled_bytes'])} "
                    f"({budget['compact_compression_ratio']:.0f}x, support {budget['min_support']:g})" if i == 0 else "",
                    model.upper(), pm(mirage["mean"], mirage["std"], 3), f"{mirage['mean'] / full:.2f}",
                    pm(random["mean"], random["std"], 3), pm(statistics.fmean(gap), statistics.stdev(gap), 3, sign=True)])
    return head + md_table(["data set", "set", "model", "Mirage", "Mirage/full", "random, same bytes",
                            "Mirage − random (paired)"], rows, ["l", "l", "l", "r", "r", "r", "r"])


def headline_mirage(d: dict) -> str:
    ds = d["datasets"]["nci-tpsa"]
    s = ds["summary"]
    budget = ds.get("budgets", {}).get("50")
    if budget is not None:
        b = budget["summary"]
        return (f"nci-tpsa distilled to {nbytes(budget['distilled_bytes'])}, {budget['compact_compression_ratio']:.0f}x "
                f"smaller than its training graphs with both counted in compact bytes; a GCN trained on it reaches test "
                f"ROC-AUC {b['gcn/mirage']['mean']:.3f} (full data {s['gcn/full']['roc_auc']['mean']:.3f}, a random "
                f"subset of the same bytes {b['gcn/random_compact']['mean']:.3f})")
    return (f"nci-tpsa distilled {ds['compression_ratio']:.0f}x in {ds['distill_cpu_seconds']:.1f} s; a GCN trained "
            f"on it reaches test ROC-AUC {s['gcn/mirage']['roc_auc']['mean']:.3f} (full data "
            f"{s['gcn/full']['roc_auc']['mean']:.3f}, an equal-size random subset {s['gcn/random']['roc_auc']['mean']:.3f})")


# ---------------------------------------------------------------------------------------------- reliability

RELIABILITY_OUTCOMES = {"clear": "clear errors", "traceback": "tracebacks", "silent": "silent wrong outputs",
                        "hang": "hangs", "data_lost": "data lost", "payload": "payloads executed", "other": "other"}


def render_reliability(d: dict) -> str:
    """``reliability.json`` (``tools/reliability_probe.py``): outcomes per category, then every case that
    did not end as it should."""
    outcomes = list(d["summary"])
    records = d["records"]
    categories = list(dict.fromkeys(r["category"] for r in records))
    rows = []
    for category in categories + ["total"]:
        mine = records if category == "total" else [r for r in records if r["category"] == category]
        rows.append([f"**{category}**" if category == "total" else category, str(len(mine))]
                    + [str(sum(r["outcome"] == o for r in mine)) for o in outcomes])
    table = md_table(["category", "cases"] + [RELIABILITY_OUTCOMES.get(o, o) for o in outcomes], rows,
                     ["l"] + ["r"] * (len(outcomes) + 1))
    bad = [r for r in records if r["outcome"] != "clear"]
    if bad:
        table += "\n\nCases that did not end as they should:\n\n" + md_table(
            ["category", "case", "outcome", "detail"],
            [[r["category"], r["case"].replace("|", "\\|"), r["outcome"],
              r.get("detail", "").replace("|", "\\|").replace("\n", " ")[:160]] for r in bad])
    return settings_line(f"{d['cases']} cases, {d['seconds']:.0f} s") + table


# ---------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Section:
    """One generated region: the results files it reads (in order) and the function that renders them."""
    files: tuple[str, ...]
    render: Callable[..., str]
    missing: str | None = None  # text shown while a results file does not exist yet (None: an error)


PRD_SETTINGS_FILES = ("prd_full.json", "prd_full_no_light_prior.json", "prd_full_light_lr.json",
                      "prd_full_grey_albedo.json")

TABLES: dict[str, Section] = {
    "distillcore_codebook": Section(("distillcore_codebook.json",), render_codebook),
    "rasterize": Section(("rasterize.json",), render_rasterize_cpu),
    "rasterize_stages": Section(("rasterize.json",), render_rasterize_stages),
    "rasterize_cuda": Section(("rasterize_cuda.json",), render_rasterize_cuda),
    "feature3dgs": Section(("feature3dgs.json",), render_feature3dgs),
    "feature3dgs_decoder": Section(("feature3dgs.json",), render_feature3dgs_decoder),
    "huge_pages": Section(("feature3dgs_speed_without_thp.json", "feature3dgs.json"), render_huge_pages),
    "feature3dgs_outdoor": Section(("feature3dgs_outdoor_5000.json", "feature3dgs_outdoor.json",
                                    "feature3dgs_outdoor_refine250.json"),
                                   render_feature3dgs_outdoor),
    "pointdistiller": Section(("pointdistiller.json",), render_pointdistiller),
    "pointdistiller_point": Section(("pointdistiller_point.json",), render_pointdistiller),
    "pointdistiller_1000steps": Section(("pointdistiller_1000steps.json",), render_pointdistiller),
    "prd_full": Section(("prd_full.json",), render_prd_full),
    "prd_full_glossy": Section(("prd_full_glossy.json",), render_prd_full),
    "prd_quick": Section(("prd.json",), render_prd_quick),
    "prd_oracles": Section(("prd_full.json", "prd_full_glossy.json"), render_prd_oracles),
    "prd_shadows": Section(("prd_full.json", "prd_full_glossy.json"), render_prd_shadows),
    "prd_interreflect": Section(("prd_interreflect.json",), render_prd_seeds),
    "prd_interreflect_deshadow": Section(("prd_interreflect_deshadow.json",), render_prd_seeds),
    "prd_medium": Section(("prd_medium.json",), render_prd_seeds),
    "prd_medium_interreflect": Section(("prd_medium_interreflect.json",), render_prd_seeds),
    "prd_settings": Section(PRD_SETTINGS_FILES, lambda *ds: render_prd_settings(dict(zip(PRD_SETTINGS_FILES, ds)))),
    "vqgraph": Section(("vqgraph.json",), render_vqgraph),
    "mirage": Section(("mirage.json",), render_mirage),
    "mirage_budget": Section(("mirage.json",), render_mirage_budget),
    "reliability": Section(("reliability.json",), render_reliability,
                           missing="*Not measured yet: run `.venv/bin/python tools/reliability_probe.py`, "
                                   "then `make docs`.*"),
}

HEADLINES: dict[str, Section] = {
    "distillcore": Section(("distillcore_codebook.json",), headline_codebook),
    "rasterize": Section(("rasterize.json", "rasterize_cuda.json"), headline_rasterize),
    "feature3dgs": Section(("feature3dgs.json",), headline_feature3dgs),
    "pointdistiller": Section(("pointdistiller.json",), headline_pointdistiller),
    "prd": Section(("prd_full.json",), headline_prd),
    "vqgraph": Section(("vqgraph.json",), headline_vqgraph),
    "mirage": Section(("mirage.json",), headline_mirage),
}


def _headline_table(load: Callable[[str], dict]) -> str:
    """All headlines in one table (docs/benchmarks.md)."""
    names = {"feature3dgs": "Feature 3DGS", "prd": "Progressive radiance distillation",
             "pointdistiller": "PointDistiller", "vqgraph": "VQGraph", "mirage": "Mirage",
             "rasterize": "Rasterizer", "distillcore": "distillcore quantizer"}
    rows = [[names[k], s.render(*(load(f) for f in s.files)), ", ".join(f"`{f}`" for f in s.files)]
            for k, s in HEADLINES.items()]
    return md_table(["method", "headline", "results"], rows)


# ---------------------------------------------------------------------------------------------- driver

def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md: the files this script maintains."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


class Loader:
    """Reads each results file once."""

    def __init__(self, results: Path):
        self.results = results
        self.cache: dict[str, dict] = {}

    def __call__(self, name: str) -> dict:
        if name not in self.cache:
            path = self.results / name
            if not path.is_file():
                raise FileNotFoundError(f"results file {path} is missing (run its benchmark, see docs/benchmarks.md)")
            with open(path) as f:
                self.cache[name] = json.load(f)
        return self.cache[name]


def render_region(kind: str, name: str, load: Callable[[str], dict]) -> str:
    """The generated text of one marked region (without the markers)."""
    if kind == "table" and name == "headlines":
        return "\n" + _headline_table(load) + "\n"
    registry = TABLES if kind == "table" else HEADLINES
    if name not in registry:
        raise ValueError(f"unknown {kind} '{name}' (known: {', '.join(sorted(registry))})")
    section = registry[name]
    try:
        data = [load(f) for f in section.files]
    except FileNotFoundError:
        if section.missing is None:
            raise
        data = None
    text = section.missing if data is None else section.render(*data)
    return "\n" + text + "\n" if kind == "table" else text


def update_text(text: str, load: Callable[[str], dict], where: str = "doc") -> str:
    """``text`` with every marked region regenerated; an unclosed or unknown marker is an error."""
    closed = {(m.group(1), m.group(2)) for m in MARKER.finditer(text)}
    for m in OPEN_MARKER.finditer(text):
        if (m.group(1), m.group(2)) not in closed:
            raise ValueError(f"{where}: marker '{m.group(0)}' has no closing '<!-- /{m.group(1)}:{m.group(2)} -->'")
    return MARKER.sub(lambda m: f"<!-- {m.group(1)}:{m.group(2)} -->{render_region(m.group(1), m.group(2), load)}"
                                f"<!-- /{m.group(1)}:{m.group(2)} -->", text)


def broken_links(root: Path = ROOT) -> list[str]:
    """Relative links in README.md and docs/*.md whose target file does not exist, as 'file: target'."""
    bad = []
    for path in doc_files(root):
        text = path.read_text()
        # links inside code blocks are examples, not links
        text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            file_part = target.split("#", 1)[0]
            if not (path.parent / file_part).exists():
                bad.append(f"{path.relative_to(root)}: {target}")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a doc is out of date or has a broken relative link")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    load = Loader(args.root / "benchmarks" / "results")
    stale = []
    try:
        for path in doc_files(args.root):
            old = path.read_text()
            new = update_text(old, load, str(path.relative_to(args.root)))
            if new != old:
                stale.append(path.relative_to(args.root))
                if not args.check:
                    path.write_text(new)
                    print(f"updated {path.relative_to(args.root)}")
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"make_docs: error: {err}", file=sys.stderr)
        return 2
    links = broken_links(args.root)
    for link in links:
        print(f"make_docs: broken link: {link}", file=sys.stderr)
    if args.check and stale:
        print("make_docs: out of date (run `make docs`): " + ", ".join(map(str, stale)), file=sys.stderr)
    return 1 if (links or (args.check and stale)) else 0


if __name__ == "__main__":
    sys.exit(main())
