# Grad-CAM heatmaps and ΔL across sparsities; the study's HTML report.


def gradcam_levels(w):
    """The trained networks Grad-CAM compares: nearest level of the method to each sparsity."""
    levels = []
    for s in config["gradcam"]["sparsities"]:
        level = plan.level_for(config, w.dataset, w.model, int(w.seed), w.method, s)
        levels.append({"sparsity": level.sparsity, "method": level.method,
                       "checkpoint": str(level.path / "checkpoint.pt")})
    unique = {lv["checkpoint"]: lv for lv in levels}
    return list(unique.values())


rule gradcam:
    """Heatmaps of a fixed set of test faces at each configured sparsity, and ΔL."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoints=lambda w: [lv["checkpoint"] for lv in gradcam_levels(w)],
        code=code("gradcam.py") + TRAIN_CODE,
    output:
        heatmaps=f"{RESULTS}/gradcam/{{dataset}}/{{model}}/seed{{seed}}/{{method}}/heatmaps.npz",
        delta=f"{RESULTS}/gradcam/{{dataset}}/{{model}}/seed{{seed}}/{{method}}/delta.csv",
    wildcard_constraints:
        method=r"(imp|oneshot)-(global|local)",
    params:
        faces=lambda w: faces_dir(w.dataset),
        levels=lambda w: as_json(gradcam_levels(w)),
        spec=lambda w: as_json({
            "input_size": config["models"][w.model].get("input_size"),
            "samples_per_class": config["gradcam"]["samples_per_class"],
            "device": config["device"],
            "threads": config["threads"],
        }),
        out=lambda w: f"{RESULTS}/gradcam/{w.dataset}/{w.model}/seed{w.seed}/{w.method}",
    threads: config["threads"]
    resources:
        **gpu_job(minutes=60),
    log:
        f"{LOGS}/gradcam/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.log",
    benchmark:
        f"{BENCH}/gradcam/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.tsv"
    shell:
        "{DLTH} gradcam --faces {params.faces} --model {wildcards.model} "
        "--seed {wildcards.seed} --levels {params.levels:q} --spec {params.spec:q} "
        "--out {params.out} > {log} 2>&1"


def separability_levels(w):
    """The dense network and every ticket of the method, as the stage's --levels."""
    levels = plan.method_levels(config, w.dataset, w.model, int(w.seed), w.method)
    return [{"level": lv.path.name, "path": str(lv.path)} for lv in levels]


rule separability:
    """Linear probe and silhouette of the penultimate test-set features of the dense model and each ticket."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoints=lambda w: [f"{lv['path']}/checkpoint.pt" for lv in separability_levels(w)],
        metrics=lambda w: [f"{lv['path']}/metrics.json" for lv in separability_levels(w)],
        code=code("separability.py") + TRAIN_CODE,
    output:
        csv=f"{RESULTS}/separability/{{dataset}}/{{model}}/seed{{seed}}/{{method}}.csv",
    wildcard_constraints:
        method=r"(imp|oneshot)-(global|local)|snip|grasp|control-(reinit|random-mask)",
    params:
        faces=lambda w: faces_dir(w.dataset),
        levels=lambda w: as_json(separability_levels(w)),
        spec=lambda w: as_json({
            "input_size": config["models"][w.model].get("input_size"),
            "folds": config["separability"]["folds"],
            "max_samples": config["separability"]["max_samples"],
            "device": config["device"],
            "threads": config["threads"],
        }),
    threads: config["threads"]
    resources:
        **gpu_job(minutes=60),
    log:
        f"{LOGS}/separability/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.log",
    benchmark:
        f"{BENCH}/separability/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.tsv"
    shell:
        "{DLTH} separability --faces {params.faces} --levels {params.levels:q} "
        "--model {wildcards.model} --method {wildcards.method} --seed {wildcards.seed} "
        "--spec {params.spec:q} --out {output.csv} > {log} 2>&1"


def latency_levels(w):
    """The dense network, then every ticket of each configured latency method."""
    out = []
    for method in latency_methods(w.model):
        for lv in plan.method_levels(config, w.dataset, w.model, int(w.seed), method):
            if lv.method == "dense" and out:
                continue
            out.append({"method": lv.method, "level": lv.path.name, "path": str(lv.path)})
    return out


rule latency:
    """CPU latency of the dense network and the run's tickets, timed side by side."""
    input:
        checkpoints=lambda w: [f"{lv['path']}/checkpoint.pt" for lv in latency_levels(w)],
        metrics=lambda w: [f"{lv['path']}/metrics.json" for lv in latency_levels(w)],
        code=code("latency.py", "structured.py") + TRAIN_CODE,
    output:
        csv=f"{RESULTS}/latency/{{dataset}}/{{model}}/seed{{seed}}/latency.csv",
    params:
        levels=lambda w: as_json(latency_levels(w)),
        spec=lambda w: as_json({
            "input_size": config["models"][w.model].get("input_size"),
            "batch_sizes": config["latency"]["batch_sizes"],
            "repeats": config["latency"]["repeats"],
            "warmup": config["latency"]["warmup"],
            "min_seconds": config["latency"]["min_seconds"],
            "threads": config["threads"],
        }),
    threads: config["threads"]
    log:
        f"{LOGS}/latency/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/latency/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    shell:
        "{DLTH} latency --levels {params.levels:q} --model {wildcards.model} "
        "--spec {params.spec:q} --out {output.csv} > {log} 2>&1"


def report_inputs(w):
    out = []
    for d in DATASETS:
        out += [f"{RESULTS}/{d}/faces/extraction_log.csv", f"{RESULTS}/{d}/faces/summary.json"]
        out += study_metrics(d)
    return (out + transfer_metrics() + gradcam_outputs() + separability_outputs()
            + latency_outputs())


rule report:
    """One self-contained HTML file: accuracy vs sparsity, tables, Table I, Grad-CAM, provenance."""
    input:
        report_inputs,
        code=code("report.py", "stats.py", "templates/report.html.j2"),
    output:
        html=REPORT,
        figures=report(directory(f"{RESULTS}/figures"), patterns=["{name}.png"],
                       category="Figures", caption="../report/figures.rst"),
    params:
        config=as_json(config),
    log:
        f"{LOGS}/report.log",
    shell:
        "{DLTH} report --results {RESULTS} --config-json {params.config:q} "
        "--benchmarks {BENCH} --figures {output.figures} --out {output.html} > {log} 2>&1"
