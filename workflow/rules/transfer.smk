# Ticket transfer (Table I): the ticket of dataset A, its mask fixed, trained on dataset B;
# beside it B's own dense network and A's dense network fine-tuned on B (no mask).


rule transfer_ticket:
    """Train A's winning ticket (mask + weights) on B with its mask fixed."""
    input:
        faces=f"{RESULTS}/{{dst}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dst}}/faces/manifest.csv",
        ticket=lambda w: f"{transfer_source(w)}/checkpoint.pt",
        mask=lambda w: f"{transfer_source(w)}/mask.pt",
        ticket_metrics=lambda w: f"{transfer_source(w)}/metrics.json",
        init=f"{RESULTS}/{{src}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=jobs.stage_code("stages.transfer"),
    output:
        metrics=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/{{method}}/metrics.json",
        checkpoint=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/{{method}}/checkpoint.pt",
    log:
        f"{LOGS}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-{{method}}.log",
    benchmark:
        f"{BENCH}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-{{method}}.tsv"
    wildcard_constraints:
        method=f"(?:{methods.method_pattern(('imp', 'oneshot'))})-sparsity\\d+",
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dst),
        ticket=transfer_source,
        dense=lambda w: f"{run_dir(w, w.src)}/dense",
        out=lambda w: f"{RESULTS}/transfer/{w.src}-to-{w.dst}/{w.model}/seed{w.seed}/{w.method}",
        weights=config["transfer"]["weights"],
        spec=lambda w: jobs.as_json(jobs.transfer_spec(config, w.model)),
    shell:
        "python -m deepfake_lth transfer --faces {params.faces} --ticket {params.ticket} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} "
        "--weights {params.weights} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule transfer_dense:
    """The dense baseline of Table I: B's own dense model, recorded under the transfer pair."""
    input:
        metrics=f"{RESULTS}/{{dst}}/{{model}}/seed{{seed}}/dense/metrics.json",
        code=jobs.stage_code("stages.transfer"),
    output:
        metrics=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/dense/metrics.json",
    log:
        f"{LOGS}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-dense.log",
    conda:
        CONDA_ENV
    params:
        dense=lambda w: f"{run_dir(w, w.dst)}/dense",
        out=lambda w: f"{RESULTS}/transfer/{w.src}-to-{w.dst}/{w.model}/seed{w.seed}/dense",
    shell:
        "python -m deepfake_lth transfer --baseline {params.dense} --model {wildcards.model} --source-dataset {wildcards.src} "
        "--out {params.out} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule transfer_finetuned:
    """The dense network of A fine-tuned on B (no mask) with the ticket's transfer schedule."""
    input:
        faces=f"{RESULTS}/{{dst}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dst}}/faces/manifest.csv",
        checkpoint=f"{RESULTS}/{{src}}/{{model}}/seed{{seed}}/dense/checkpoint.pt",
        source=f"{RESULTS}/{{src}}/{{model}}/seed{{seed}}/dense/metrics.json",
        code=jobs.stage_code("stages.transfer"),
    output:
        metrics=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/dense-finetuned/metrics.json",
        checkpoint=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/dense-finetuned/checkpoint.pt",
        predictions=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/dense-finetuned/predictions.csv",
    log:
        f"{LOGS}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-dense-finetuned.log",
    benchmark:
        f"{BENCH}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-dense-finetuned.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dst),
        dense=lambda w: f"{run_dir(w, w.src)}/dense",
        out=lambda w: f"{RESULTS}/transfer/{w.src}-to-{w.dst}/{w.model}/seed{w.seed}/dense-finetuned",
        spec=lambda w: jobs.as_json(jobs.transfer_spec(config, w.model)),
    shell:
        "python -m deepfake_lth transfer --faces {params.faces} --finetune {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} "
        "--spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
