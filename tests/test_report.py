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
                                "delta_l": d, "concentration": 0.2 + 0.1 * j,
                                "prob_fake": 0.5})
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
    # accuracy per dataset (2), Grad-CAM grid and ΔL figure (2)
    assert len(uris) >= 4
    for uri in uris:
        assert base64.b64decode(uri).startswith(b"\x89PNG\r\n\x1a\n")
    srcs = re.findall(r'src\s*=\s*["\']?([^"\'\s>]*)', html, flags=re.IGNORECASE)
    assert srcs and all(s.startswith("data:") for s in srcs)
    assert 'src="http' not in html and "<link" not in html and "@import" not in html
    assert "<script" not in html
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
    header = re.findall(r"<th>(.*?)</th>", part)
    assert header == ["Model", "PR", "Params (M)", "Base", "IMP", "One-shot"]
    assert cells(part, "mesonet") == [["mesonet", "0%", "0.015", "59.9", "-", "-"]]
    assert cells(part, "Ticket") == [
        ["Ticket", "59%", "0.006", "-", "61.2", "59.8"],
        ["Ticket", "79%", "0.003", "-", "59.3", "55.9"],
    ]


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
    assert imp80[7].startswith(f"{want:.1f} ± ")
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
    assert rows[0][3] == "0.00 ± 0.00"  # ΔL at the dense level
    assert float(rows[2][3].split(" ± ")[0]) > 0
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
               "--benchmarks", str(bench), "--out", str(out), "--figures", str(tmp_path / "f")])
    assert rc == 0 and out.is_file()
    assert len(re.findall("data:image/png;base64,", out.read_text())) >= 3
    rc = main(["report", "--results", str(res), "--config-json", "{not json",
               "--out", str(tmp_path / "x.html")])
    assert rc == 2 and not (tmp_path / "x.html").exists()


def test_report_reads_gradcam_stage_output(tmp_path):
    """The report takes the files gradcam_stage writes, not only fabricated ones."""
    import torch
    from torch import nn

    from deepfake_lth import gradcam

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
    assert len(re.findall("data:image/png;base64,", part)) == 2
    assert [r[1] for r in cells(part, "IMP-Global")] == ["0.0", "50.0"]
