# Dense training: round 0 of every chain; θ0 is kept for rewinding.


rule train_dense:
    """Train the dense detector (Adam, early stopping) and keep θ0 as init.pt."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        code=TRAIN_CODE,
    output:
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/checkpoint.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        out=lambda w: f"{run_dir(w)}/dense",
        spec=train_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/train_dense/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train_dense/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    shell:
        "{DLTH} train --faces {params.faces} --out {params.out} --model {wildcards.model} "
        "--seed {wildcards.seed} --spec {params.spec:q} > {log} 2>&1"
