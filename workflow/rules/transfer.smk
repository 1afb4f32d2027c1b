# Ticket transfer (Table I): the ticket of dataset A, its mask fixed, trained on dataset B.


def transfer_source(w):
    """Folder of A's ticket for a transfer method such as imp-global-sparsity59."""
    method, sparsity = plan.parse_transfer_method(config, w.method)
    return plan.level_for(config, w.src, w.model, int(w.seed), method, sparsity).path


rule transfer_ticket:
    """Train A's winning ticket (mask + weights) on B with its mask fixed."""
    input:
        faces=f"{RESULTS}/{{dst}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dst}}/faces/manifest.csv",
        ticket=lambda w: f"{transfer_source(w)}/checkpoint.pt",
        mask=lambda w: f"{transfer_source(w)}/mask.pt",
        init=f"{RESULTS}/{{src}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE,
    output:
        metrics=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/{{method}}/metrics.json",
        checkpoint=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/{{method}}/checkpoint.pt",
    wildcard_constraints:
        method=r"(imp|oneshot)-(global|local)-sparsity\d+",
    params:
        faces=lambda w: faces_dir(w.dst),
        ticket=transfer_source,
        dense=lambda w: f"{run_dir(w, w.src)}/dense",
        out=lambda w: f"{RESULTS}/transfer/{w.src}-to-{w.dst}/{w.model}/seed{w.seed}/{w.method}",
        weights=config["transfer"]["weights"],
        spec=retrain_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-{{method}}.log",
    benchmark:
        f"{BENCH}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-{{method}}.tsv"
    shell:
        "{DLTH} transfer --faces {params.faces} --ticket {params.ticket} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} "
        "--weights {params.weights} --spec {params.spec:q} > {log} 2>&1"


rule transfer_dense:
    """The dense baseline of Table I: B's own dense model, recorded under the transfer pair."""
    input:
        metrics=f"{RESULTS}/{{dst}}/{{model}}/seed{{seed}}/dense/metrics.json",
    output:
        metrics=f"{RESULTS}/transfer/{{src}}-to-{{dst}}/{{model}}/seed{{seed}}/dense/metrics.json",
    params:
        dense=lambda w: f"{run_dir(w, w.dst)}/dense",
        out=lambda w: f"{RESULTS}/transfer/{w.src}-to-{w.dst}/{w.model}/seed{w.seed}/dense",
    log:
        f"{LOGS}/transfer/{{src}}-to-{{dst}}-{{model}}-seed{{seed}}-dense.log",
    shell:
        "{DLTH} transfer --baseline {params.dense} --model {wildcards.model} --source-dataset {wildcards.src} "
        "--out {params.out} > {log} 2>&1"
