# Iterative magnitude pruning (one job per round), one-shot pruning and the control baselines.


rule imp_round:
    """IMP round k: prune rate of the remaining weights of round k-1, rewind, retrain."""
    input:
        unpack(prev_round),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("imp"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}/round{{k}}/metrics.json",
    log:
        f"{LOGS}/imp_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/imp_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_round(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/imp-{w.criterion}/round{w.k}",
        spec=retrain_spec,
    shell:
        "python -m deepfake_lth imp-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule oneshot:
    """Prune the dense model straight to one sparsity, rewind and retrain once."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/checkpoint.pt",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("oneshot"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/oneshot-{{criterion}}/sparsity{{pct}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/oneshot-{{criterion}}/sparsity{{pct}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/oneshot-{{criterion}}/sparsity{{pct}}/metrics.json",
    log:
        f"{LOGS}/oneshot/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-sparsity{{pct}}.log",
    benchmark:
        f"{BENCH}/oneshot/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-sparsity{{pct}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/oneshot-{w.criterion}/sparsity{w.pct}",
        sparsity=level_sparsity("oneshot-{criterion}"),
        spec=oneshot_spec,
    shell:
        "python -m deepfake_lth oneshot --faces {params.faces} --dense {params.dense} --out {params.out} "
        "--model {wildcards.model} --seed {wildcards.seed} --sparsity {params.sparsity} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule control:
    """Controls of the IMP ticket at round k (deepfake_lth.stages.control): its mask re-initialised or shuffled within each layer, the random pruning chain (round k-1 of the chain pruned at random to the ticket's per-layer counts), and the weaker random mask and random last round."""
    input:
        unpack(control_inputs),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("control") + code("stages/imp.py"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/control-{{control}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/control-{{control}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/control-{{control}}/round{{k}}/metrics.json",
    log:
        f"{LOGS}/control/{{dataset}}-{{model}}-seed{{seed}}-{{control}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/control/{{dataset}}-{{model}}-seed{{seed}}-{{control}}-round{{k}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        ticket=control_ticket,
        prev=control_prev,
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/control-{w.control}/round{w.k}",
        spec=control_spec,
    shell:
        "python -m deepfake_lth control --faces {params.faces} --imp {params.ticket} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} "
        "--name {wildcards.control} {params.prev} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule structured_round:
    """Structured round k: remove rate of the remaining conv filters (L1 norm), rewind, retrain."""
    input:
        unpack(prev_structured),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("structured") + code("pruning/structured.py"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/mask.pt",
        channels=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/channels.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/metrics.json",
    log:
        f"{LOGS}/structured_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/structured_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_structured(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/structured-{w.criterion}/round{w.k}",
        spec=retrain_spec,
    shell:
        "python -m deepfake_lth structured-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule imp_round_rate:
    """IMP round k at another step size: prune rate of the remaining weights of round k-1."""
    input:
        unpack(prev_round_rate),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("imp"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}-rate{{rate}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}-rate{{rate}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}-rate{{rate}}/round{{k}}/metrics.json",
    log:
        f"{LOGS}/imp_round_rate/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-rate{{rate}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/imp_round_rate/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-rate{{rate}}-round{{k}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_round_rate(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/imp-{w.criterion}-rate{w.rate}/round{w.k}",
        spec=rate_spec,
    shell:
        "python -m deepfake_lth imp-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --rate {wildcards.rate} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule prune_init:
    """SNIP or GraSP: score θ0 on a few training batches, prune once to a sparsity, train once."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("pai"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{pai}}/sparsity{{pct}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{pai}}/sparsity{{pct}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{pai}}/sparsity{{pct}}/metrics.json",
    log:
        f"{LOGS}/prune_init/{{dataset}}-{{model}}-seed{{seed}}-{{pai}}-sparsity{{pct}}.log",
    benchmark:
        f"{BENCH}/prune_init/{{dataset}}-{{model}}-seed{{seed}}-{{pai}}-sparsity{{pct}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/{w.pai}/sparsity{w.pct}",
        sparsity=level_sparsity("{pai}"),
        batches=config["prune_at_init"]["batches"],
        temperature=config["prune_at_init"]["temperature"],
        spec=pai_spec,
    shell:
        "python -m deepfake_lth prune-init --faces {params.faces} --dense {params.dense} --out {params.out} "
        "--model {wildcards.model} --seed {wildcards.seed} --method {wildcards.pai} "
        "--sparsity {params.sparsity} --batches {params.batches} "
        "--temperature {params.temperature} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"


rule kd_round:
    """KD round k: prune round k-1 of the KD chain like IMP, rewind, retrain distilled from the dense network."""
    input:
        unpack(prev_kd),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        teacher=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/checkpoint.pt",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=stage_code("distill") + code("stages/imp.py"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/kd-{{criterion}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/kd-{{criterion}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/kd-{{criterion}}/round{{k}}/metrics.json",
    log:
        f"{LOGS}/kd_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/kd_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]
    resources:
        **gpu_job(),
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_kd(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/kd-{w.criterion}/round{w.k}",
        spec=kd_spec,
    shell:
        "python -m deepfake_lth kd-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} --threads {threads} > {log} 2>&1 || (tail -n 3 {log} >&2; exit 1)"
