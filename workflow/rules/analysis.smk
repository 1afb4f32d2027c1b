# Grad-CAM heatmaps and ΔL across sparsities, separability, zero-shot scoring, latency; the
# study's HTML report. Each job's spec comes from its stage's module (job_spec).
from deepfake_lth.analysis import gradcam, latency, separability


rule gradcam:
    """Heatmaps of a fixed set of test faces at each configured sparsity, and ΔL."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoints=lambda w: [lv["checkpoint"] for lv in gradcam_levels(w)],
        code=jobs.stage_code("analysis.gradcam"),
    output:
        heatmaps=f"{RESULTS}/gradcam/{{dataset}}/{{model}}/seed{{seed}}/{{method}}/heatmaps.npz",
        delta=f"{RESULTS}/gradcam/{{dataset}}/{{model}}/seed{{seed}}/{{method}}/delta.csv",
    log:
        f"{LOGS}/gradcam/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.log",
    benchmark:
        f"{BENCH}/gradcam/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.tsv"
    wildcard_constraints:
        method=methods.method_pattern(("imp", "oneshot")),
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(minutes=60),
    params:
        faces=lambda w: faces_dir(w.dataset),
        levels=lambda w: as_json(gradcam_levels(w)),
        spec=lambda w: as_json(gradcam.job_spec(config, w.model)),
        out=lambda w: f"{RESULTS}/gradcam/{w.dataset}/{w.model}/seed{w.seed}/{w.method}",
    shell:
        "python -m deepfake_lth gradcam --faces {params.faces} --model {wildcards.model} "
        "--seed {wildcards.seed} --levels {params.levels:q} --spec {params.spec:q} "
        "--out {params.out} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule separability:
    """Linear probe and silhouette of the penultimate test-set features of the dense model and each ticket."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoints=lambda w: [f"{lv['path']}/checkpoint.pt" for lv in separability_levels(w)],
        metrics=lambda w: [f"{lv['path']}/metrics.json" for lv in separability_levels(w)],
        code=jobs.stage_code("analysis.separability"),
    output:
        csv=f"{RESULTS}/separability/{{dataset}}/{{model}}/seed{{seed}}/{{method}}.csv",
    log:
        f"{LOGS}/separability/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.log",
    benchmark:
        f"{BENCH}/separability/{{dataset}}-{{model}}-seed{{seed}}-{{method}}.tsv"
    wildcard_constraints:
        method=methods.method_pattern(("imp", "oneshot", "prune-init", "control")),
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(minutes=60),
    params:
        faces=lambda w: faces_dir(w.dataset),
        levels=lambda w: as_json(separability_levels(w)),
        spec=lambda w: as_json(separability.job_spec(config, w.model)),
    shell:
        "python -m deepfake_lth separability --faces {params.faces} --levels {params.levels:q} "
        "--model {wildcards.model} --method {wildcards.method} --seed {wildcards.seed} "
        "--spec {params.spec:q} --threads {threads} --out {output.csv} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule generalise:
    """Score every planned run of one dataset, model and seed, without training, on unseen test sets."""
    input:
        checkpoints=lambda w: [f"{lv.path}/checkpoint.pt" for lv in cross_levels(w)],
        metrics=lambda w: [f"{lv.path}/metrics.json" for lv in cross_levels(w)],
        faces=cross_faces,
        code=jobs.stage_code("analysis.generalisation"),
    output:
        csv=f"{RESULTS}/generalisation/{{dataset}}/{{model}}/seed{{seed}}.csv",
    log:
        f"{LOGS}/generalise/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/generalise/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(minutes=60),
    params:
        runs=lambda w: " ".join(str(lv.path) for lv in cross_levels(w)),
        faces=lambda w: " ".join(
            f"{d}={faces_dir(d)}" for d in generalisation.faces_needed(config, w.dataset)
        ),
        manipulations=lambda w: (
            "--manipulations" if generalisation.by_manipulation(config, w.dataset) else ""
        ),
        spec=lambda w: as_json(generalisation.job_spec(config, w.model)),
    shell:
        "python -m deepfake_lth generalise --runs {params.runs} --model {wildcards.model} "
        "--source {wildcards.dataset} --faces {params.faces} {params.manipulations} "
        "--spec {params.spec:q} --threads {threads} --out {output.csv} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule robustness:
    """Score the dense network and robustness.methods' tickets on their test split under perturbations."""
    input:
        checkpoints=lambda w: [f"{lv.path}/checkpoint.pt" for lv in robust_levels(w)],
        metrics=lambda w: [f"{lv.path}/metrics.json" for lv in robust_levels(w)],
        faces=[f"{RESULTS}/{{dataset}}/faces/{f}" for f in ("faces.npy", "manifest.csv")],
        code=jobs.stage_code("analysis.robustness"),
    output:
        csv=f"{RESULTS}/robustness/{{dataset}}/{{model}}/seed{{seed}}.csv",
    log:
        f"{LOGS}/robustness/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/robustness/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(minutes=60),
    params:
        runs=lambda w: " ".join(str(lv.path) for lv in robust_levels(w)),
        faces=lambda w: faces_dir(w.dataset),
        perturbations=" ".join(config["robustness"]["perturbations"]),
        levels=" ".join(str(x) for x in config["robustness"]["levels"]),
        seed=config["robustness"]["seed"],
        spec=lambda w: as_json(robustness.job_spec(config, w.model)),
    shell:
        "python -m deepfake_lth robustness --runs {params.runs} --model {wildcards.model} "
        "--source {wildcards.dataset} --faces {params.faces} --perturbations {params.perturbations} "
        "--levels {params.levels} --perturbation-seed {params.seed} --spec {params.spec:q} "
        "--threads {threads} --out {output.csv} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule latency:
    """CPU latency of the dense network and the run's tickets, timed side by side."""
    input:
        checkpoints=lambda w: [f"{lv['path']}/checkpoint.pt" for lv in latency_levels(w)],
        metrics=lambda w: [f"{lv['path']}/metrics.json" for lv in latency_levels(w)],
        code=jobs.stage_code("analysis.latency"),
    output:
        csv=f"{RESULTS}/latency/{{dataset}}/{{model}}/seed{{seed}}/latency.csv",
    log:
        f"{LOGS}/latency/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/latency/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    params:
        levels=lambda w: as_json(latency_levels(w)),
        spec=lambda w: as_json(latency.job_spec(config, w.model)),
    shell:
        "python -m deepfake_lth latency --levels {params.levels:q} --model {wildcards.model} "
        "--spec {params.spec:q} --threads {threads} --out {output.csv} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule report:
    """One self-contained HTML file: accuracy vs sparsity, tables, Table I, Grad-CAM, provenance."""
    input:
        report_inputs,
        code=jobs.stage_code("report"),
    output:
        html=REPORT,
        figures=report(
            directory(f"{RESULTS}/figures"),
            patterns=["{name}.png"],
            category="Figures",
            caption="../report/figures.rst",
        ),
    log:
        f"{LOGS}/report.log",
    conda:
        CONDA_ENV
    params:
        results=lambda w, output: str(Path(output.html).parent),
        benchmarks=lambda w, output: str(Path(output.html).parent / "benchmarks"),
        config=as_json(study_config()),
    shell:
        "python -m deepfake_lth report --results {params.results} --config-json {params.config:q} "
        "--benchmarks {params.benchmarks} --figures {output.figures} --out {output.html} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
