# Dense training: round 0 of every chain; θ0 is kept for rewinding.


rule train_dense:
    """Train the dense detector (Adam, early stopping) and keep θ0 as init.pt."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        code=jobs.stage_code("stages.dense"),
    output:
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/checkpoint.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/metrics.json",
    log:
        f"{LOGS}/train_dense/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train_dense/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        out=lambda w: f"{run_dir(w)}/dense",
        args=jobs.dense_arguments(config),
    shell:
        "python -m deepfake_lth train --faces {params.faces} --out {params.out} --model {wildcards.model} "
        "--seed {wildcards.seed} {params.args} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
