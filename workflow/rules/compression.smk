# INT8 post-training quantization of the dense network and chosen tickets (ONNX Runtime).


rule quantize:
    """fp32 and INT8 models of one level folder (sparse, coded .onnxz), evaluated on the test split, timed side by side; INT8 served only where faster."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/checkpoint.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/metrics.json",
        code=jobs.stage_code("deploy.quantize"),
    output:
        fp32=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/int8/model.onnx",
        int8=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/int8/model.int8.onnx",
        fp32z=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/int8/model.onnxz",
        int8z=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/int8/model.int8.onnxz",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{level}}/int8/metrics.json",
    log:
        f"{LOGS}/quantize/{{dataset}}-{{model}}-seed{{seed}}-{{level}}.log",
    benchmark:
        f"{BENCH}/quantize/{{dataset}}-{{model}}-seed{{seed}}-{{level}}.tsv"
    wildcard_constraints:
        level=COMPRESSION_LEVEL,
    conda:
        CONDA_ENV
    threads: config["threads"]
    params:
        faces=lambda w: faces_dir(w.dataset),
        level=lambda w: f"{run_dir(w)}/{w.level}",
        out=lambda w: f"{run_dir(w)}/{w.level}/int8",
        spec=quantize_spec,
    shell:
        "python -m deepfake_lth quantize --faces {params.faces} --level {params.level} "
        "--out {params.out} --seed {wildcards.seed} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
