# acquire -> extract (one job per shard) -> pack
# A dataset's face settings are config["datasets"][name]["faces"]: the global `faces` section
# with the dataset's own keys on top (config.validate), so a change reruns only its jobs.


# Downloads (urls, kaggle) run where snakemake runs: cluster compute nodes often have no internet.
localrules:
    acquire,


rule acquire:
    """Fetch, list or generate a dataset's raw files (source types: synthetic, local, urls, kaggle)."""
    input:
        manifest=lambda w: (
            [dataset_cfg(w)["source"]["manifest"]]
            if dataset_cfg(w)["source"]["type"] == "urls"
            else []
        ),
        code=lambda w: jobs.stage_code(
            "data.acquire",
            source_type=dataset_cfg(w)["source"]["type"],
            layout=dataset_cfg(w)["source"].get("layout"),
        )(w),
    output:
        f"{RESOURCES}/{{dataset}}/sources.csv",
    log:
        f"{LOGS}/acquire/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        source=lambda w: as_json(dataset_cfg(w)["source"]),
        out=lambda w: f"{RESOURCES}/{w.dataset}",
        train_manipulations=lambda w: as_json(dataset_cfg(w)["train_manipulations"]),
        role=lambda w: dataset_cfg(w)["role"],
    shell:
        "python -m deepfake_lth acquire --dataset {wildcards.dataset} --source {params.source:q} "
        "--train-manipulations {params.train_manipulations:q} --role {params.role} "
        "--out {params.out} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule extract_faces:
    """Sample frames_per_video frames of each video of one shard and crop the face with MTCNN."""
    input:
        sources=f"{RESOURCES}/{{dataset}}/sources.csv",
        code=jobs.stage_code("data.faces"),
    output:
        npy=f"{RESULTS}/{{dataset}}/faces/shards/shard{{shard}}.npy",
        csv=f"{RESULTS}/{{dataset}}/faces/shards/shard{{shard}}.csv",
        log_csv=f"{RESULTS}/{{dataset}}/faces/shards/shard{{shard}}.log.csv",
    log:
        f"{LOGS}/extract/{{dataset}}-shard{{shard}}.log",
    benchmark:
        f"{BENCH}/extract_faces/{{dataset}}-shard{{shard}}.tsv"
    conda:
        CONDA_ENV
    # torch and FFmpeg on two threads (BENCHMARKS.md §1: one such process 5.3x the naive
    # script on long-GOP 1080p); Snakemake gives fewer where --cores has fewer
    threads: 2
    resources:
        **extract_job(detect_flag),
    params:
        spec=lambda w: as_json(crop_spec(w)),
        shards=lambda w: dataset_cfg(w)["shards"],
        detect=detect_flag,
        prefix=lambda w: f"{RESULTS}/{w.dataset}/faces/shards/shard{w.shard}",
    shell:
        "python -m deepfake_lth extract --sources {input.sources} --shard {wildcards.shard} "
        "--shards {params.shards} --spec {params.spec:q} --detect {params.detect} "
        "--out {params.prefix} --threads {threads} > {log} 2>&1 "
        "|| {{ rc=$?; tail -n 1 {log}; exit $rc; }}"


rule pack_faces:
    """Merge the shards into faces.npy + manifest.csv and assign train/val/test by video."""
    input:
        shards=shards_of,
        sources=lambda w: f"{RESOURCES}/{faces_origin(w.dataset)}/sources.csv",
        code=jobs.stage_code("data.pack"),
    output:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        log_csv=f"{RESULTS}/{{dataset}}/faces/extraction_log.csv",
        summary=f"{RESULTS}/{{dataset}}/faces/summary.json",
    log:
        f"{LOGS}/pack/{{dataset}}.log",
    conda:
        CONDA_ENV
    params:
        faces=lambda w: faces_dir(w.dataset),
        shards=lambda w: dataset_cfg(w)["shards"],
        split=lambda w: as_json(dataset_cfg(w)["faces"]["split"]),
        seed=lambda w: dataset_cfg(w)["faces"]["split_seed"],
        spec=lambda w: as_json({**crop_spec(w), "detect_faces": detect_flag(w)}),
        train_manipulations=lambda w: as_json(dataset_cfg(w)["train_manipulations"]),
        role=lambda w: dataset_cfg(w)["role"],
        shard_dir=shard_dir,
        source=lambda w: as_json(
            {
                "dataset": faces_origin(w.dataset),
                "type": config["datasets"][faces_origin(w.dataset)]["source"]["type"],
                "layout": config["datasets"][faces_origin(w.dataset)]["source"].get("layout"),
            }
        ),
    # the log's last line (the dataset's failed files by status, or why packing stopped)
    # goes to the console too
    shell:
        "rc=0; python -m deepfake_lth pack --faces {params.faces} --sources {input.sources} "
        "--shards {params.shards} --split {params.split:q} --seed {params.seed} "
        "--spec {params.spec:q} --train-manipulations {params.train_manipulations:q} "
        "--role {params.role} --shard-dir {params.shard_dir} --source {params.source:q} > {log} 2>&1 || rc=$?; tail -n 1 {log}; exit $rc"
