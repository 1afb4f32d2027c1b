"""The HTML report built from a small fabricated results tree."""

from __future__ import annotations

import base64
import html as htmllib
import json
import re

import numpy as np
import pandas as pd
import pytest

from deepfake_lth import report
from deepfake_lth.analysis import stats

SECTION_IDS = ["accuracy", "results", "transfer", "gradcam", "provenance"]


def write_metrics(path, **values):
    path.mkdir(parents=True, exist_ok=True)
    base = {"params_total": 15000, "test_auc": 0.7, "video_acc": None, "val_acc": 0.6,
            "epochs": 3, "train_seconds": 1.5, "device": "cpu"}
    (path / "metrics.json").write_text(json.dumps(base | values))


def fabricate(root, seeds=(0,)):
    res = root / "results"
    for seed in seeds:
        run = res / "dsA" / "mesonet" / f"seed{seed}"
        shift = 0.01 * seed
        write_metrics(run / "dense", sparsity=0.0, params_nonzero=15000, test_acc=0.626 + shift)
        for k, (s, acc) in enumerate([(0.2, 0.63), (0.36, 0.61), (0.488, 0.60), (0.8, 0.562)], 1):
            write_metrics(run / "imp-global" / f"round{k}", sparsity=s,
                          params_nonzero=round(15000 * (1 - s)), test_acc=acc + shift)
            write_metrics(run / "imp-local" / f"round{k}", sparsity=s,
                          params_nonzero=round(15000 * (1 - s)), test_acc=acc - 0.02 + shift)
            write_metrics(run / "oneshot-global" / f"sparsity{round(100 * s)}", sparsity=s,
                          params_nonzero=round(15000 * (1 - s)), test_acc=acc - 0.03 + shift)
        cnn = res / "dsB" / "cnn5" / f"seed{seed}"
        write_metrics(cnn / "dense", sparsity=0.0, params_nonzero=300000, test_acc=0.762,
                      video_acc=0.8, device="cuda:0 (NVIDIA H100)")
        write_metrics(cnn / "imp-global" / "round1", sparsity=0.2, params_nonzero=240000,
                      test_acc=0.75, video_acc=0.79, device="cuda:0 (NVIDIA H100)")
    # a stale run of a dataset the config no longer names
    write_metrics(res / "old" / "mesonet" / "seed0" / "dense", sparsity=0.0, test_acc=0.111)

    tr = res / "transfer" / "dsA-to-dsB" / "mesonet" / "seed0"
    write_metrics(tr / "dense", sparsity=0.0, params_nonzero=15000, test_acc=0.599)
    write_metrics(tr / "imp-global-sparsity59", sparsity=0.59, params_nonzero=6000,
                  test_acc=0.612)
    write_metrics(tr / "oneshot-global-sparsity59", sparsity=0.59, params_nonzero=6100,
                  test_acc=0.598)
    write_metrics(tr / "imp-global-sparsity79", sparsity=0.79, params_nonzero=3000,
                  test_acc=0.593)
    write_metrics(tr / "oneshot-global-sparsity79", sparsity=0.79, params_nonzero=3100,
                  test_acc=0.559)

    rng = np.random.default_rng(0)
    for method in ("imp-global", "oneshot-global"):
        gc = res / "gradcam" / "dsA" / "mesonet" / "seed0" / method
        gc.mkdir(parents=True)
        n, levels = 4, [(0.0, "dense"), (0.59, method), (0.79, method)]
        raw = rng.random((3, n, 8, 8)).astype(np.float32)
        norm = raw / raw.max(axis=(2, 3), keepdims=True)
        np.savez_compressed(
            gc / "heatmaps.npz",
            images=rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
            labels=np.array([0, 0, 1, 1]), rows=np.arange(n),
            sparsities=np.array([s for s, _ in levels]),
            methods=np.array([m for _, m in levels]),
            raw=raw, norm=norm, probs=rng.random((3, n)).astype(np.float32),
            target=np.array("label"),
        )
        records = []
        for j, (s, m) in enumerate(levels):
            for i in range(n):
                d = float(np.linalg.norm(norm[j, i] - norm[0, i]))
                records.append({"row": i, "label": int(i >= 2), "sparsity": s, "method": m,
                                "delta_l": d, "delta_l_raw": 3 * d,
                                "concentration": 0.2 + 0.1 * j,
                                "prob_fake": 0.3 + 0.4 * (i >= 2)})
        pd.DataFrame(records).to_csv(gc / "delta.csv", index=False)

    faces = res / "dsA" / "faces"
    faces.mkdir(parents=True)
    pd.DataFrame({
        "index": range(6), "video_id": ["v1", "v1", "v2", "v3", "v3", "v4"],
        "label": [0, 0, 0, 1, 1, 1], "split": ["train", "train", "test", "train", "val", "test"],
        "frame_index": [0, 1, 0, 0, 1, 0],
    }).to_csv(faces / "manifest.csv", index=False)
    pd.DataFrame({
        "source": ["a.mp4", "b.mp4", "c.mp4", "d.mp4", "e.mp4"],
        "video_id": ["v1", "v2", "v3", "v4", "v5"], "label": [0, 0, 1, 1, 1],
        "status": ["ok", "ok", "ok", "ok", "no_face"], "frames_read": [40] * 5,
        "faces": [2, 1, 2, 1, 0],
    }).to_csv(faces / "extraction_log.csv", index=False)

    bench = root / "benchmarks"
    for rule, rows in {"train": [12.5, 7.5], "imp_round": [3.0, 4.0, 5.0]}.items():
        (bench / rule / "dsA").mkdir(parents=True)
        for i, s in enumerate(rows):
            (bench / rule / "dsA" / f"job{i}.tsv").write_text(
                "s\th:m:s\tmax_rss\n" + f"{s}\t0:00:{int(s):02d}\t100.0\n"
            )
    return res, bench


def config(notice=True, pairs=True, seeds=(0,)):
    return {
        "results": "results",
        "seeds": list(seeds),
        "synthetic_notice": notice,
        "datasets": {"dsA": {"source": {"type": "synthetic"}},
                     "dsB": {"source": {"type": "synthetic"}}},
        "models": {"mesonet": {"input_size": 32}, "cnn5": {}},
        "transfer": {"pairs": [{"from": "dsA", "to": "dsB"}] if pairs else [],
                     "sparsities": [0.6, 0.8], "methods": ["imp-global", "oneshot-global"]},
        "report": {"title": "Study <b>demo</b>"},
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    res, bench = fabricate(root, seeds=(0, 1))
    out = report.build_report(res, config(seeds=(0, 1)), root / "report.html",
                              benchmarks_dir=bench, figures_dir=root / "figures")
    return root, out.read_text()


def test_sections_and_embedded_images(built):
    root, html = built
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html
        assert f'href="#{sid}"' in html  # table of contents
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    # accuracy per dataset (2 inline charts), Grad-CAM grid and ΔL figure (2 PNGs)
    assert len(uris) >= 2 and len(re.findall(r'<div class="chart"><svg viewBox', html)) >= 2
    for uri in uris:
        assert base64.b64decode(uri).startswith(b"\x89PNG\r\n\x1a\n")
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.DOTALL)
    srcs = re.findall(r'src\s*=\s*["\']?([^"\'\s>]*)', markup, flags=re.IGNORECASE)
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert 'src="http' not in html and "<link" not in html and "@import" not in html
    assert "<script src" not in html and "fetch(" not in html  # one file, offline
    pngs = sorted(p.name for p in (root / "figures").glob("*.png"))
    assert pngs == ["accuracy_dsA.png", "accuracy_dsB.png", "delta_dsA_mesonet.png",
                    "gradcam_dsA_mesonet.png"]


def test_synthetic_sentence_only_when_flagged(built, tmp_path):
    page = htmllib.unescape(built[1])
    assert report.SYNTHETIC_SENTENCE in page
    assert page.index(report.SYNTHETIC_SENTENCE) < page.index('<section id="accuracy">')
    res, _ = fabricate(tmp_path)
    out = report.build_report(res, config(notice=False), tmp_path / "r.html")
    assert "synthetic demo sets" not in htmllib.unescape(out.read_text())
    assert "synthetic-notice" not in out.read_text()


def cells(html: str, first: str) -> list[list[str]]:
    """Rows (as cell texts) of the tables whose first cell is ``first``."""
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.DOTALL)
    out = []
    for row in rows:
        texts = [re.sub(r"<[^>]+>", "", c).strip()
                 for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.DOTALL)]
        if texts and texts[0] == first:
            out.append(texts)
    return out


def test_table_one_numbers(built):
    _, html = built
    start = html.index('<section id="transfer">')
    part = html[start: html.index("</section>", start)]
    assert "dsA → dsB" in part
    header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", part)
    assert header == ["Model", "PR", "Params (M)", "Base", "IMP-Global", "One-shot Global",
                      "IMP-Global − base (pp)", "One-shot Global − base (pp)"]
    assert cells(part, "mesonet") == [["mesonet", "0 %", "0.015", "59.9", "-", "-", "-", "-"]]
    tickets = cells(part, "Ticket")
    assert [row[:6] for row in tickets] == [
        ["Ticket", "60 % (59.0 %)", "0.006", "-", "61.2", "59.8"],
        ["Ticket", "80 % (79.0 %)", "0.003", "-", "59.3", "55.9"],
    ]
    for row in tickets:  # both baselines: each ticket minus the target's own dense network
        for ticket, gap in ((row[4], row[6]), (row[5], row[7])):
            assert float(gap.split()[0].replace("−", "-")) == pytest.approx(
                float(ticket) - 59.9, abs=0.11)


def test_results_table_and_filters(built, tmp_path):
    _, html = built
    start = html.index('<section id="results">')
    part = html[start: html.index("</section>", start)]
    rows = {(r[1], r[2]): r for r in cells(part, "mesonet")}
    dense = rows[("Dense", "0.0")]
    assert dense[4] == "63.1 ± 0.7"  # 0.626 and 0.636 over two seeds
    imp80 = rows[("IMP-Global", "80.0")]
    assert imp80[3] == "3,000"
    assert imp80[4] == "56.7 ± 0.7"
    # retained per seed: 0.562/0.626 and 0.572/0.636
    want = 100 * np.mean([0.562 / 0.626, 0.572 / 0.636])
    assert imp80[6].startswith(f"{want:.1f} ± ")  # empty columns are left out
    assert ("One-shot Global", "36.0") in rows and ("IMP-Local", "20.0") in rows
    assert cells(part, "cnn5")[0][6] == "80.0 ± 0.0"  # video accuracy where it is known
    assert "11.1" not in part  # the stale dataset "old" is not in the config
    assert "Study &lt;b&gt;demo&lt;/b&gt;" in html  # text is escaped


def test_gradcam_and_provenance(built):
    _, html = built
    start = html.index('<section id="gradcam">')
    part = html[start: html.index("</section>", start)]
    assert "dsA / mesonet" in part and "Explained score: the face&#39;s true class" in part
    rows = cells(part, "IMP-Global")
    assert [r[1] for r in rows] == ["0.0", "59.0", "79.0"]
    assert rows[0][3:5] == ["0.000 ± 0.000", "0.00 ± 0.00"]  # raw and normalised ΔL, dense
    raw, norm = (float(rows[2][i].split(" ± ")[0]) for i in (3, 4))
    assert norm > 0 and raw == pytest.approx(3 * norm, abs=0.01)
    assert rows[0][6:8] == ["0.30 ± 0.00", "0.70 ± 0.00"]  # p(fake) of real, of fake faces
    prov = html[html.index('<section id="provenance">'):]
    for name in ("torch", "torchvision", "snakemake", "facenet-pytorch", "numpy", "python"):
        assert f"<td>{name}</td>" in prov
    assert "cuda:0 (NVIDIA H100)" in prov and "<td>cpu</td>" in prov
    assert ["dsA", "test", "2", "1", "1", "2"] in cells(prov, "dsA")
    assert ["dsA", "no_face", "1", "0"] in cells(prov, "dsA")
    assert ["dsA", "ok", "4", "6"] in cells(prov, "dsA")
    assert cells(prov, "train") == [["train", "2", "20.0", "10.0", "12.5"]]
    assert cells(prov, "imp_round") == [["imp_round", "3", "12.0", "4.0", "5.0"]]
    assert "synthetic_notice: true" in prov  # the config as run, as YAML


def test_missing_parts_say_not_run(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    out = report.build_report(res, config(), tmp_path / "r.html",
                              benchmarks_dir=tmp_path / "none")
    html = out.read_text()
    for sid in SECTION_IDS:
        assert f'<section id="{sid}">' in html
    assert "not run: transfer pairs are configured" in html
    assert "not run: no Grad-CAM results" in html
    assert "not run: no Snakemake benchmark files" in html
    html2 = report.build_report(res, config(pairs=False), tmp_path / "r2.html").read_text()
    assert "not run: no transfer pairs are configured" in html2


def test_cli_with_config_json(tmp_path):
    from deepfake_lth.cli import main

    res, bench = fabricate(tmp_path)
    out = tmp_path / "results" / "report.html"
    rc = main(["report", "--results", str(res), "--config-json", json.dumps(config()),
               "--benchmarks", str(bench), "--out", str(out), "--figures", str(tmp_path / "f"),
               "--command", "snakemake --cores 2 results/report.html"])
    assert rc == 0 and out.is_file()
    assert "<td>command line</td><td>snakemake --cores 2 results/report.html</td>" in (
        out.read_text())
    page = out.read_text()
    assert len(re.findall("data:image/png;base64,", page)) + page.count('<svg viewBox') >= 3
    rc = main(["report", "--results", str(res), "--config-json", "{not json",
               "--out", str(tmp_path / "x.html")])
    assert rc == 2 and not (tmp_path / "x.html").exists()


def test_report_reads_gradcam_stage_output(tmp_path):
    """The report takes the files gradcam_stage writes, not only fabricated ones."""
    import torch
    from torch import nn

    from deepfake_lth.analysis import gradcam

    torch.set_num_threads(1)
    faces = tmp_path / "results" / "dsA" / "faces"
    faces.mkdir(parents=True)
    rng = np.random.default_rng(1)
    np.save(faces / "faces.npy", rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    pd.DataFrame({"index": range(4), "video_id": ["a", "b", "c", "d"], "label": [0, 0, 1, 1],
                  "split": ["test"] * 4, "frame_index": [0] * 4}).to_csv(
        faces / "manifest.csv", index=False)

    def factory():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))

    levels = []
    for s in (0.0, 0.5):
        net = factory()
        if s:
            with torch.no_grad():
                net[0].weight.mul_((torch.rand_like(net[0].weight) > s).float())
        torch.save(net.state_dict(), tmp_path / f"{s}.pt")
        levels.append((s, "dense" if s == 0 else "imp-global", tmp_path / f"{s}.pt"))
    gradcam.gradcam_stage(faces, levels, "tiny", 16, 1, 0, "cpu",
                          tmp_path / "results/gradcam/dsA/mesonet/seed0/imp-global",
                          model_factory=factory, target_layer="0")
    html = report.build_report(tmp_path / "results", config(), tmp_path / "r.html").read_text()
    part = html[html.index('<section id="gradcam">'):html.index('<section id="provenance">')]
    assert part.count('<img src="data:image/png;base64,') == 2  # the maps and ΔL
    assert part.count('type="range"') == 1  # the slider through the sparsities
    assert [r[1] for r in cells(part, "IMP-Global")] == ["0.0", "50.0"]


# --------------------------------------------------------------------------- beyond the paper

EXTRA_IDS = ["controls", "pai", "step-sizes", "seeds", "separability", "latency"]


def fabricate_beyond(root, seeds=(0, 1, 2)):
    """Controls, SNIP/GraSP, IMP at rate 0.05 and separability CSVs next to fabricate()'s runs."""
    res = root / "results"
    for seed in seeds:
        run = res / "dsA" / "mesonet" / f"seed{seed}"
        shift = 0.01 * seed
        for k, (s, acc) in enumerate([(0.2, 0.63), (0.36, 0.61), (0.488, 0.60), (0.8, 0.562)], 1):
            for name, d in (("reinit", -0.05), ("random-mask", -0.06 + 0.002 * seed)):
                write_metrics(run / f"control-{name}" / f"round{k}", sparsity=s,
                              params_nonzero=100, test_acc=acc + d + shift,
                              control_of="imp-global", test_samples=10**6)
            for method, d in (("snip", -0.04), ("grasp", -0.05 - 0.01 * seed)):
                write_metrics(run / method / f"sparsity{round(100 * s)}", sparsity=s,
                              params_nonzero=100, test_acc=acc + d + shift, test_samples=10**6)
        for k in range(1, 32):  # 1 − 0.95^31 = 79.6 %
            write_metrics(run / "imp-global-rate0.05" / f"round{k}", sparsity=1 - 0.95**k,
                          params_nonzero=100, test_acc=0.6 + shift + 0.0005 * k * (1 + seed),
                          test_samples=10**6)
        sep = res / "separability" / "dsA" / "mesonet" / f"seed{seed}"
        sep.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"method": "imp-global", "level": ["dense", "round1", "round4"],
                      "sparsity": [0.0, 0.2, 0.8], "probe_acc": [0.7, 0.68 + shift, 0.61],
                      "probe_acc_std": [0.02, 0.03, 0.04], "silhouette": [0.1, 0.08, 0.05],
                      "n_samples": 100, "feature_dim": 16, "folds": 5}
                     ).to_csv(sep / "imp-global.csv", index=False)
        lat = res / "latency" / "dsA" / "mesonet" / f"seed{seed}"
        lat.mkdir(parents=True, exist_ok=True)
        rows = []
        for batch, dense_ms in ((1, 2.0), (32, 40.0)):
            for method, level, s, cs, params, ms in (
                    ("dense", "dense", 0.0, 0.0, 15000, dense_ms),
                    ("imp-global", "round4", 0.8, 0.0, 15000, dense_ms * 1.02),
                    ("structured-local", "round3", 0.75, 0.488, 4000, dense_ms / (2 + seed))):
                rows.append({"method": method, "level": level, "sparsity": s,
                             "channel_sparsity": cs, "params": params, "macs": params * 100,
                             "batch": batch, "threads": 1, "median_ms": ms, "min_ms": ms * 0.9,
                             "speedup_vs_dense": dense_ms / ms,
                             "speedup_low": 0.95 * dense_ms / ms,
                             "speedup_high": 1.05 * dense_ms / ms})
        pd.DataFrame(rows).to_csv(lat / "latency.csv", index=False)
    return res


def beyond_config(seeds=(0, 1, 2)):
    cfg = config(seeds=seeds)
    cfg["datasets"]["dsA"]["source"]["kind"] = "images"
    cfg.update({"controls": ["reinit", "random-mask"],
                "prune": {"rate": 0.2, "rounds": 8, "criteria": ["global", "local"]},
                "oneshot": {"criteria": ["global"],
                            "sparsities": [0.2, 0.36, 0.488, 0.5904, 0.7903, 0.8]},
                "prune_at_init": {"methods": ["snip", "grasp"]},
                "step_sizes": {"rates": [0.05]},
                "separability": {"methods": ["imp-global"]},
                "latency": {"methods": ["imp-global", "structured-local"]}})
    return cfg


def section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start: html.index("</section>", start)]


@pytest.fixture(scope="module")
def beyond(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond")
    res, bench = fabricate(root, seeds=(0, 1, 2))
    fabricate_beyond(root)
    out = report.build_report(res, beyond_config(), root / "report.html",
                              benchmarks_dir=bench, figures_dir=root / "figures")
    return root, out.read_text()


def test_sections_beyond_the_paper_when_configured(beyond):
    root, html = beyond
    numbers = []
    for sid in EXTRA_IDS + ["claims"]:
        assert f'<section id="{sid}">' in html and f'href="#{sid}"' in html
        numbers.append(int(re.search(r"<h2>(\d+)\.", section(html, sid)).group(1)))
    assert numbers == list(range(5, 12))
    assert "<h2>12. Provenance</h2>" in html
    pngs = {p.name for p in (root / "figures").glob("*.png")}
    assert {"controls_dsA.png", "pai_dsA.png", "step_sizes_dsA.png",
            "separability_dsA_mesonet.png"} <= pngs
    # Fig. 2 keeps the paper's methods and the controls; SNIP, GraSP and rates have their own
    assert "accuracy_dsA.png" in pngs

    controls = section(html, "controls")
    # no matched control: no round is judged a winning ticket
    assert ("mesonet: IMP-Global is not judged at its first round (not run: no matched "
            "control)" in controls)
    rows = cells(controls, "mesonet")
    assert [r[1] for r in rows] == ["round1", "round2", "round3", "round4"]
    first = rows[0]  # 0.63 + shift vs dense 0.626 + shift; controls far below
    assert first[2:5] == ["20.0", "3", "64.0"]
    assert first[-3:] == ["yes", "above the other controls", "not run: no matched control"]
    # round2 is 1.6 points below dense (within δ = 2), round3 2.6 points below (outside)
    assert [r[-3] for r in rows] == ["yes", "yes", "no", "no"]
    assert "δ = 2 points" in controls
    # the paper's a′ ≥ a beside the rule; the interval of the paired difference (the same
    # on every seed here: only the test images' binomial term is left, never width 0)
    assert first[6] == "yes" and rows[1][6] == "no"
    assert first[7:9] == ["+0.4 [+0.3, +0.5]", "binomial over 1000000 test images and 3 "
                          "seeds (no predictions.csv)"]

    pai = section(html, "pai")
    snip80 = [r for r in cells(pai, "mesonet") if r[1] == "IMP-Global − SNIP" and r[2] == "80.0"]
    assert snip80 and snip80[0][3:5] == ["3", "+4.0"]
    assert "same difference on every seed" in snip80[0][7]
    grasp80 = [r for r in cells(pai, "mesonet") if r[1] == "IMP-Global − GraSP" and r[2] == "80.0"]
    diffs = [0.05 + 0.01 * s for s in (0, 1, 2)]
    ci = stats.mean_ci(diffs)
    assert grasp80[0][5] == f"[{100 * ci.low:+.1f}, {100 * ci.high:+.1f}]"
    from scipy.stats import ttest_rel
    imp = [0.562 + 0.01 * s for s in (0, 1, 2)]
    grasp = [a - d for a, d in zip(imp, diffs, strict=True)]
    assert grasp80[0][7] == f"{ttest_rel(imp, grasp).pvalue:.3f}"

    steps = section(html, "step-sizes")
    final = {r[1]: r for r in cells(steps, "mesonet") if r[2] in ("0.2", "0.05")}
    assert final["IMP-Global"][3:5] == ["4", "80.0"]
    assert final["IMP-Global (rate 0.05)"][3:5] == ["31", "79.6"]

    seeds = section(html, "seeds")
    dense_row = next(r for r in cells(seeds, "mesonet") if r[1] == "Dense")
    ci = stats.mean_ci([0.626, 0.636, 0.646])
    assert dense_row[3:6] == ["3", "63.6", f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}]"]
    assert "IMP-Global − One-shot Global" in seeds

    sep = section(html, "separability")
    rows = {r[1]: r for r in cells(sep, "IMP-Global")}
    assert rows["round1"][3:5] == ["3", "69.0"] and rows["round4"][7] == "0.050"

    lat = section(html, "latency")
    rows = {m: cells(lat, m)[0] for m in ("Dense", "IMP-Global", "Structured-Local")}
    assert rows["Dense"][1:] == ["dense", "0.0", "0.0", "15,000", "1.50", "2.00 (1.00×)",
                                 "40.00 (1.00×)"]
    # an unstructured ticket whose speed-up spread contains 1: no difference, not a speed-up;
    # its channels, parameters and MACs are the dense network's ("–": does not apply)
    r = 1 / 1.02
    assert rows["IMP-Global"][3:6] == ["–", "–", "–"]
    assert rows["IMP-Global"][6] == (f"2.04 (no difference: {r:.2f}× [{0.95 * r:.2f}, "
                                      f"{1.05 * r:.2f}])")
    # the mean over seeds of 2 ms / (2, 3, 4) and of the speed-ups 2×, 3×, 4×
    assert rows["Structured-Local"][2:4] == ["75.0", "48.8"]
    assert rows["Structured-Local"][6] == (f"{np.mean([1.0, 2 / 3, 0.5]):.2f} (3.00× "
                                           "[2.85, 3.15])")


def verdicts(html: str) -> dict[str, str]:
    """The verdict summary at the top: claim (short) → verdict."""
    out = {}
    for row in re.findall(r'<tr id="summary-claim-\d+">(.*?)</tr>', html, flags=re.DOTALL):
        tds = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.DOTALL)
        out[htmllib.unescape(re.sub(r"<[^>]+>", "", tds[0]))] = re.sub(r"<[^>]+>", "", tds[1])
    return out


def test_claims_table_verdicts(beyond):
    _, html = beyond
    v = verdicts(html)
    assert len(v) == 13
    assert v["IMP-Global beats IMP-Local on the image set"] == "holds"  # +2 pp on every seed
    assert v["IMP ≥ one-shot pruning at 80 % sparsity"] == "holds"
    assert v["ResNet-18 is the most robust model under pruning"] == "not run"
    assert v["Iterative pruning"] == "holds"
    assert v["Smaller pruning steps"] == "holds"
    # fabricate() writes Grad-CAM for seed 0 only: one training run, not judged
    assert v["Pruned models narrow their Grad-CAM focus"] == "not enough evidence: one seed"
    intro = htmllib.unescape(section(html, "claims"))
    # fabricate() writes transfers for seed 0 only too
    assert v["A ticket transferred at 60 % sparsity keeps the target's dense accuracy"] == (
        "not enough evidence: one seed")
    assert "2 claims need two or more" in intro and "δ = 2 points" in intro
    assert "Holm" in intro
    assert 'class="verdict verdict-holds"' in html
    assert 'class="verdict verdict-not-enough-evidence"' in html


def test_sections_hidden_unless_configured(built, tmp_path):
    _, html = built  # two seeds, nothing else beyond the paper
    assert '<section id="seeds">' in html and '<section id="claims">' in html
    for sid in ["controls", "pai", "step-sizes", "separability", "latency"]:
        assert f'<section id="{sid}">' not in html and f'href="#{sid}"' not in html
    # results on disk do not bring a section back: the config decides
    run = tmp_path / "results" / "dsA" / "mesonet" / "seed0"
    write_metrics(run / "dense", sparsity=0.0, params_nonzero=15000, test_acc=0.626)
    write_metrics(run / "imp-global" / "round1", sparsity=0.2, params_nonzero=12000,
                  test_acc=0.63)
    fabricate_beyond(tmp_path, seeds=(0,))
    one = report.build_report(tmp_path / "results", config(), tmp_path / "one.html").read_text()
    for sid in EXTRA_IDS:
        assert f'<section id="{sid}">' not in one
    assert "<h2>5. The paper's claims on this run</h2>" in htmllib.unescape(one)
    assert "<h2>6. Provenance</h2>" in one
    # configured but not run yet: the section says so
    empty = tmp_path / "empty"
    empty.mkdir()
    html2 = report.build_report(empty, beyond_config(), tmp_path / "e.html").read_text()
    for sid in ["controls", "pai", "step-sizes", "separability", "latency"]:
        assert "not run" in section(html2, sid)
    assert set(verdicts(html2).values()) == {"not run"}  # nothing ran: not "not enough evidence"


def test_accuracy_band_is_the_t_interval_over_seeds(tmp_path, monkeypatch):
    """Fig. 2's band at a sparsity is the 95 % t-interval of the seeds' accuracies, not ± sd;
    a method with a section of its own stays out of Fig. 2."""
    from matplotlib.collections import PolyCollection

    res, _ = fabricate(tmp_path, seeds=(0, 1, 2))
    fabricate_beyond(tmp_path)
    runs, _ = report.collect_metrics(res, beyond_config())
    fig = report.curves_figure(runs, "dsA", ["dense", "imp-global"], "t", ["mesonet"])
    ax = fig.axes[0]
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    xy = bands[0].get_paths()[0].vertices
    at80 = sorted({round(y, 6) for x, y in xy if abs(x - 80.0) < 1e-6})
    ci = stats.mean_ci([56.2, 57.2, 58.2])  # 0.562 + 0.01 · seed, in percent
    assert at80 == pytest.approx([ci.low, ci.high])
    sd = np.std([56.2, 57.2, 58.2], ddof=1)
    assert at80[1] - at80[0] > 2 * sd * 1.5  # wider than ± sd: t(0.975, 2) = 4.3 / √3 · sd
    legend = [t.get_text() for t in fig.legends[0].texts]
    assert legend[:1] == ["IMP-Global"] and "SNIP" not in legend

    seen = {}
    from deepfake_lth.report import chart

    real = chart.curves_chart

    def spy(runs, dataset, methods, *args, **kwargs):
        seen[dataset] = list(methods)
        return real(runs, dataset, methods, *args, **kwargs)

    monkeypatch.setattr(chart, "curves_chart", spy)
    report.accuracy_figures(runs, report.Figures(None), ["mesonet"], exclude={"snip", "grasp"})
    assert "snip" not in seen["dsA"] and "imp-global-rate0.05" in seen["dsA"]
    assert seen["dsA"][:3] == ["dense", "imp-global", "imp-local"]  # the registry's order
    report.accuracy_figures(runs, report.Figures(None), ["mesonet"])
    assert {"snip", "grasp", "control-reinit"} <= set(seen["dsA"])


def test_d2_unplanned_runs_appear_nowhere(tmp_path):
    """D2: a run folder of a method the config does not plan (here SNIP and a control, left
    by another preset sharing results/) enters no figure, table or claim; the provenance
    counts it."""
    res, _ = fabricate(tmp_path)
    run = res / "dsA" / "mesonet" / "seed0"
    write_metrics(run / "snip" / "sparsity20", sparsity=0.2, params_nonzero=1, test_acc=0.4321)
    write_metrics(run / "control-reinit" / "round1", sparsity=0.2, params_nonzero=1,
                  test_acc=0.4321)
    html = report.build_report(res, config(), tmp_path / "r.html").read_text()
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", htmllib.unescape(html))
    outside_claims = page[page.index('<section id="accuracy">'):
                          page.index('<section id="claims">')]
    assert "43.2" not in page
    assert "SNIP" not in outside_claims and "random re-init" not in page
    from deepfake_lth.workflow.config import validate

    runs, _ = report.collect_metrics(res, validate(config()))
    assert not {"snip", "control-reinit"} & set(runs["method"])
    prov = section(html, "provenance")
    assert "method or level the config does not plan" in prov


def test_miscalibrated_baseline_and_provenance_facts(tmp_path):
    res, _ = fabricate(tmp_path)
    write_metrics(res / "dsB" / "cnn5" / "seed0" / "dense", sparsity=0.0, params_nonzero=300000,
                  test_acc=0.675, test_auc=0.999, test_acc_val_threshold=0.97,
                  val_threshold=0.93, video_acc=0.7, test_samples=240, test_videos=6)
    (res / "dsB" / "faces").mkdir(parents=True)
    (res / "dsB" / "faces" / "summary.json").write_text(json.dumps(
        {"warnings": ["the test split has only 6 videos"]}))
    html = htmllib.unescape(report.build_report(res, config(), tmp_path / "r.html").read_text())
    results = html[html.index('<section id="results">'):html.index('<section id="transfer">')]
    assert "dsB: the test split has only 6 videos" in results
    assert "Dense (miscalibrated: see below)" in results
    assert "67.5 % accuracy at the threshold 0.5 but 97.0 % at the validation threshold" in results
    assert "6 test videos (240 frames)" in results  # the test-set size of a video set
    claims = html[html.index('<section id="claims">'):html.index('<section id="provenance">')]
    assert "The dense cnn5 on dsB has 67.5 %" in claims  # the claims resting on it say so
    prov = html[html.index('<section id="provenance">'):]
    assert re.search(r"git commit</td><td>([0-9a-f]{40}|unknown) \(", prov)
    assert re.search(r"report built</td><td>\d{4}-\d\d-\d\d \d\d:\d\d UTC", prov)


def test_paper_preset_report_says_holds_for_both_criterion_claims(tmp_path):
    """Issue 15's must-show: config/paper.yaml validated, IMP-Global ahead of IMP-Local by a
    clear margin on openforensics and behind it on ffpp-celebdf at every round, seed and model
    (ffpp-celebdf with predictions.csv, the video as the unit): both claims hold in the report,
    and a run of a method the preset does not plan appears nowhere."""
    from deepfake_lth.workflow.config import read_yaml, validate

    cfg = validate(read_yaml("config/paper.yaml"))
    cfg["resources"] = str(tmp_path / "resources")  # nothing acquired: the layouts decide
    res = tmp_path / "results"
    rng = np.random.default_rng(0)
    videos, frames = 40, 4
    for model in cfg["models"]:
        for seed in cfg["seeds"]:
            for k in range(0, cfg["prune"]["rounds"] + 1):
                s = 1 - 0.8**k
                for method in (["dense"] if k == 0 else ["imp-global", "imp-local"]):
                    # openforensics, 11,000 test images: global 4 points ahead
                    folder = res / "openforensics" / model / f"seed{seed}" / (
                        "dense" if k == 0 else f"{method}/round{k}")
                    acc = 0.62 + (0.02 if method == "imp-global" else -0.02 if k else 0)
                    write_metrics(folder, sparsity=s, params_nonzero=1000, test_acc=acc,
                                  test_samples=11_000)
                    # ffpp-celebdf: local right on 34 of 40 videos, global on 22
                    right = 28 if k == 0 else 34 if method == "imp-local" else 22
                    order = rng.permutation(videos)
                    ok = np.zeros(videos, bool)
                    ok[order[:right]] = True
                    labels = np.arange(videos) % 2
                    rows = [{"row": v * frames + f, "video_id": f"vid{v:02d}",
                             "label": int(labels[v]),
                             "prob": 0.9 if ok[v] == bool(labels[v]) else 0.1}
                            for v in range(videos) for f in range(frames)]
                    folder = res / "ffpp-celebdf" / model / f"seed{seed}" / (
                        "dense" if k == 0 else f"{method}/round{k}")
                    write_metrics(folder, sparsity=s, params_nonzero=1000,
                                  test_acc=right / videos, test_samples=videos * frames,
                                  test_videos=videos)
                    pd.DataFrame(rows).to_csv(folder / "predictions.csv", index=False)
    # a control left by another preset sharing results/
    write_metrics(res / "ffpp-celebdf" / "mesonet" / "seed0" / "control-reinit" / "round1",
                  sparsity=0.2, params_nonzero=1000, test_acc=0.1234)
    html = report.build_report(res, cfg, tmp_path / "r.html").read_text()
    v = verdicts(html)
    assert v["IMP-Global beats IMP-Local on the image set"] == "holds"
    assert v["IMP-Local beats IMP-Global on the video set"] == "holds"
    claims = htmllib.unescape(section(html, "claims"))
    assert "paired by video over 40 test videos" in claims
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", htmllib.unescape(html))
    assert not re.search(r">12\.3( %)?<", page) and "random re-init" not in page
    assert "1 run: method or level the config does not plan" in page


def test_latency_of_an_unstructured_ticket_is_never_a_speed_up():
    from deepfake_lth.report.separability_latency import speedup_text

    row = pd.DataFrame({"median_ms": [1.9], "speedup_vs_dense": [1.05],
                        "speedup_low": [1.01], "speedup_high": [1.09]})
    assert speedup_text(row, "imp-global") == ("1.90 (no speed-up: same work as dense; 1.05× "
                                               "[1.01, 1.09] measured)")
    assert speedup_text(row, "structured-local") == "1.90 (1.05× [1.01, 1.09])"
    old = row.drop(columns=["speedup_low", "speedup_high"])  # a CSV from before the spread
    assert "no speed-up" in speedup_text(old, "imp-global")
    assert speedup_text(old, "structured-local") == "1.90 (1.05×, spread not recorded)"


def test_per_layer_sparsity_figure(tmp_path):
    """§III-C: where each IMP round prunes, global against local, from metrics.json."""
    res = tmp_path / "results"
    run = res / "dsA" / "mesonet" / "seed0"
    write_metrics(run / "dense", sparsity=0.0, params_nonzero=100, test_acc=0.6)
    for k, s in ((1, 0.2), (2, 0.36)):
        write_metrics(run / "imp-global" / f"round{k}", sparsity=s, params_nonzero=80,
                      test_acc=0.6, layer_sparsity={"conv.weight": s / 2, "fc.weight": 1.5 * s})
        write_metrics(run / "imp-local" / f"round{k}", sparsity=s, params_nonzero=80,
                      test_acc=0.6, layer_sparsity={"conv.weight": s, "fc.weight": s})
    runs, _ = report.collect_metrics(res, config())
    fig = report.curves.layer_sparsity_figure(runs, "dsA", "mesonet", report.Figures(tmp_path))
    assert fig is not None and (tmp_path / "layers_dsA_mesonet.png").is_file()
    assert "global one prunes the large layers hardest" in fig.caption
    html = report.build_report(res, config(), tmp_path / "r.html").read_text()
    assert "Share of each layer&#39;s weights removed after each IMP round" in html
    assert report.curves.layer_sparsity_figure(runs, "dsA", "cnn5", report.Figures(None)) is None


def test_a_new_section_is_one_function_and_one_line(tmp_path, monkeypatch):
    from deepfake_lth.report import build
    from deepfake_lth.report.common import Part, Section

    def notes_section(ctx):
        return Section("notes", "Notes", "", [Part("", lines=[f"{len(ctx.runs)} runs"])])

    monkeypatch.setattr(build, "SECTIONS", [*build.SECTIONS[:-1], notes_section,
                                            build.SECTIONS[-1]])
    res, _ = fabricate(tmp_path)
    html = report.build_report(res, config(), tmp_path / "r.html").read_text()
    assert '<a href="#notes">6. Notes</a>' in html
    assert re.search(r'<section id="notes">\s*<h2>6\. Notes</h2>', html)
    assert "<h2>7. Provenance</h2>" in html


def test_controls_table_with_the_matched_control(tmp_path):
    res, _ = fabricate(tmp_path, seeds=(0, 1, 2))
    for seed in (0, 1, 2):
        run = res / "dsA" / "mesonet" / f"seed{seed}"
        for k, (s, acc) in enumerate([(0.2, 0.63), (0.36, 0.61), (0.488, 0.60), (0.8, 0.562)], 1):
            write_metrics(run / "control-random-chain" / f"round{k}", sparsity=s,
                          params_nonzero=100, test_acc=acc + 0.01 * seed - 0.03 - 0.002 * seed,
                          test_samples=10**6)
    cfg = config(seeds=(0, 1, 2)) | {"controls": ["random-chain"]}
    cfg["datasets"]["dsA"]["source"]["kind"] = "images"  # the t-interval over seeds
    html = htmllib.unescape(report.build_report(res, cfg, tmp_path / "r.html").read_text())
    part = html[html.index('<section id="controls">'):html.index('<section id="seeds">')]
    assert "Control: random pruning chain (%)" in part
    rows = cells(part, "mesonet")
    first = rows[0]  # ticket − matched control: +3.0, +3.2, +3.4 pp over the seeds
    # the t-interval over the seeds with the (small) binomial term over 10⁶ test images
    assert first[-4] == "+3.2 [+2.8, +3.6]"
    assert first[-2:] == ["beats the matched control", "holds"]


def test_table_one_has_the_fine_tuned_dense_baseline_paired_by_video():
    """Table I: the source's dense network fine-tuned on the target beside the tickets, and
    each ticket minus it, paired by seed and by test video."""
    from deepfake_lth.report import tables

    def per_video(correct: int, n_videos: int = 20, frames: int = 10):
        right = set(range(correct))
        return pd.DataFrame({"n": frames, "correct": [frames if v in right else 0
                                                      for v in range(n_videos)],
                             "fake": [v % 2 for v in range(n_videos)]},
                            index=pd.Index([f"v{v:02d}" for v in range(n_videos)],
                                           name="video_id"))

    rows = []
    for seed in (0, 1, 2):
        for method, correct, s in (("dense", 15, 0.0), ("dense-finetuned", 14, 0.0),
                                   ("imp-global-sparsity59", 16 + (seed == 1), 0.59)):
            table = per_video(correct)
            rows.append({"pair": "dsA-to-dsB", "source": "dsA", "target": "dsB",
                         "model": "mesonet", "seed": seed, "method": method, "sparsity": s,
                         "params_nonzero": 1000, "test_acc": correct / 20, "test_videos": 20,
                         "test_samples": 200, "per_video": table})
    transfers = pd.DataFrame(rows)
    (table,) = tables.transfer_tables(transfers, {"models": {"mesonet": {}}},
                                     {"dsB": "videos"})
    assert table.columns[4] == "Fine-tuned dense"
    assert table.columns[-1] == "IMP-Global − fine-tuned (pp)"
    dense_row, ticket_row = table.rows
    assert dense_row[4].startswith("70.0")  # 14 of 20 videos
    gap = ticket_row[-1]
    diff = tables.finetuned_gap(transfers, "dsA-to-dsB", "mesonet", "imp-global", 59, "videos")
    assert "paired by video over 20 test videos and 3 seeds" in diff.how
    assert gap == diff.text().replace(" pp", "") and gap.startswith("+11.7")
    assert table.columns[-2] == "IMP-Global − base (pp)" and ticket_row[-2].startswith("+6.7")
    # without the baseline the table keeps the paper's columns
    (plain,) = tables.transfer_tables(transfers[transfers["method"] != "dense-finetuned"],
                                     {"models": {"mesonet": {}}})
    assert "Fine-tuned dense" not in plain.columns


def test_accuracy_chart_bands_lines_and_markers(tmp_path):
    """The inline chart: a band from the seeds' t-interval (one seed: binomial, clipped to
    [0, 100]), chance and always-majority lines, a marker only where a method ran (one-shot
    is no line from 0 %), every method in the legend, the x-axis log of the weights left."""
    from deepfake_lth.report import chart
    from deepfake_lth.report.common import TestCounts

    res, _ = fabricate(tmp_path, seeds=(0, 1, 2))
    runs, _ = report.collect_metrics(res, config(seeds=(0, 1, 2)))
    counts = TestCounts("videos", (300, 100), (3, 2))
    svg = str(chart.curves_chart(runs, "dsA", ["dense", "imp-global", "oneshot-global"],
                                 ["mesonet"], counts))
    assert "chance 50 %" in svg and "always “real” 75 %" in svg
    legend = re.findall(r'<button type="button" data-series="\d+"[^>]*>.*?</svg> ([^<]+)</button>',
                        svg)
    assert legend == ["dense", "IMP-Global", "One-shot Global"]
    oneshot = re.search(r'<g class="series" data-series="2">(.*?)</g>', svg, re.DOTALL).group(1)
    n_levels = runs[(runs["dataset"] == "dsA") & (runs["method"] == "oneshot-global")][
        "level"].nunique()
    assert oneshot.count("data-tip=") == n_levels  # a marker per level run, none at 0 %
    tips = re.findall(r'data-tip="(IMP-Global, round4[^"]*)"', svg)
    ci = stats.mean_ci([0.562, 0.572, 0.582])
    assert f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}] (t-interval over 3 seeds)" in tips[0]
    # one seed: the binomial interval over the 5 videos, inside [0, 100]
    one = runs[runs["seed"] == 0]
    svg1 = str(chart.curves_chart(one, "dsA", ["imp-global"], ["mesonet"], counts))
    low, high = chart.wilson(0.562, 5)
    assert f"[{100 * low:.1f}, {100 * high:.1f}] (binomial, n = 5)" in svg1
    assert 0 <= low < high <= 1
    # log of the fraction left: 80 % sparse (0.2 left) lies log(0.2)/log(0.1) of the way to 90 %
    ax = chart.Axes(0.1, 40, 70)
    assert ax.x(0.2) - ax.x(1.0) == pytest.approx(0.699 * (ax.x(0.1) - ax.x(1.0)), rel=1e-3)


def test_summary_rows_estimate_needs_and_rules_once():
    """A claim's row: the comparison that tells most, its direction, its interval clipped to
    what a difference can be; what would decide it (the claim's own ``needs`` where it has
    one); every rule once, the shared decision text apart."""
    from deepfake_lth.report.claims import summary_rows

    decision = "Decision: 95 % intervals, Holm."
    claims = [
        {"text": "A beats B (the paper)", "source": "§1", "verdict": "does not hold",
         "why": "", "rule": f"Rule one. {decision}",
         "evidence": ["m on d: A − B = +1.0 pp [+0.2, +1.8] (…), which counts for the claim.",
                      "m on e: A − B = -3.0 pp [-140.0, -1.0] (…), which counts against it."]},
        {"text": "C keeps D", "source": "§2", "verdict": "not enough evidence",
         "why": "one seed", "rule": f"Rule one. {decision}",
         "evidence": ["m on d: C − D = +0.5 pp [-1.0, +2.0], from one seed: a single training "
                      "run each, not judged."]},
        {"text": "E", "source": "§3", "verdict": "not run", "why": "", "rule": f"Rule two. {decision}",
         "evidence": ["E was not run."], "needs": "add `e` to methods"},
        {"text": "F", "source": "§4", "verdict": "not run", "why": "", "rule": "Rule two.",
         "evidence": ["m on d, round4 (80 %): the matched control did not run (see x)."]},
    ]
    rows, rules, decisions = summary_rows(claims)
    assert rules == ["Rule one.", "Rule two."] and decisions == [decision]
    first = rows[0]
    assert first.estimate == "−3.0 pp [−100.0, −1.0]" and first.direction == "down"
    assert first.side == "against" and first.where == "m on e" and first.needs == ""
    assert "1 for, 1 against" in first.tally
    assert "seeds: [0, 1, 2]" in str(rows[1].needs) and rows[1].side == "one seed"
    assert rows[2].needs == "add `e` to methods" and rows[2].estimate == "–"
    assert rows[3].needs == "The matched control did not run."
    assert [r.rule for r in rows] == [1, 1, 2, 2]


def test_a_dense_network_below_always_majority_is_flagged(tmp_path):
    """Retained shares are meaningless when the dense network does no better than always
    answering the larger class: the results section says so."""
    from deepfake_lth.report import tables
    from deepfake_lth.report.common import Context, Figures, TestCounts

    res, _ = fabricate(tmp_path)
    runs, transfers = report.collect_metrics(res, config())
    figures = Figures(None)
    figures.counts["dsA"] = TestCounts("images", (70, 30), (70, 30))  # always "real": 70 %
    ctx = Context(res, config(), runs, transfers, [], figures, ["mesonet"], ["dsA"],
                  {"dsA": "images"}, {}, None)
    (part,) = tables.results(ctx).parts
    assert any("no better than always answering “real” (70.0 %" in n for n in part.notes)
    figures.counts["dsA"] = TestCounts("images", (50, 50), (50, 50))
    assert not any("no better" in n for n in tables.results(ctx).parts[0].notes)


def test_the_winning_ticket_claims_seeds_are_read_for_its_dataset_and_model_only(tmp_path):
    """claims.winning_ticket trains extra seeds of one dataset × model: the report reads them
    there (the claim judges them), and a seed the config names nowhere stays out."""
    res, _ = fabricate(tmp_path, seeds=(0, 1, 2))
    cfg = config() | {"claims": {"winning_ticket": {"dataset": "dsA", "model": "mesonet",
                                                    "seeds": [0, 1]}}}
    runs, _ = report.collect_metrics(res, cfg)
    dense = runs[runs["method"] == "dense"]
    assert sorted(dense.loc[dense["dataset"] == "dsA", "seed"]) == [0, 1]
    assert sorted(dense.loc[dense["dataset"] == "dsB", "seed"]) == [0]  # not its dataset
    assert sorted(report.collect_metrics(res, config())[0].query("method == 'dense'")["seed"]
                  ) == [0, 0]
