# Iterative magnitude pruning (one job per round), one-shot pruning and the control baselines.


rule imp_round:
    """IMP round k: prune rate of the remaining weights of round k-1, rewind, retrain."""
    input:
        unpack(prev_round),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}/round{{k}}/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_round(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/imp-{w.criterion}/round{w.k}",
        spec=retrain_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/imp_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/imp_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.tsv"
    shell:
        "{DLTH} imp-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} > {log} 2>&1"


rule oneshot:
    """Prune the dense model straight to one sparsity, rewind and retrain once."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/checkpoint.pt",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/oneshot-{{criterion}}/sparsity{{pct}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/oneshot-{{criterion}}/sparsity{{pct}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/oneshot-{{criterion}}/sparsity{{pct}}/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/oneshot-{w.criterion}/sparsity{w.pct}",
        sparsity=oneshot_fraction,
        spec=retrain_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/oneshot/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-sparsity{{pct}}.log",
    benchmark:
        f"{BENCH}/oneshot/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-sparsity{{pct}}.tsv"
    shell:
        "{DLTH} oneshot --faces {params.faces} --dense {params.dense} --out {params.out} "
        "--model {wildcards.model} --seed {wildcards.seed} --sparsity {params.sparsity} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} > {log} 2>&1"


rule control:
    """Controls at IMP round k: the ticket's mask re-initialised, or a random mask of equal layer sparsity."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        ticket=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{CONTROL_CRITERION}/round{{k}}/mask.pt",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/control-{{control}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/control-{{control}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/control-{{control}}/round{{k}}/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        ticket=lambda w: f"{run_dir(w)}/imp-{CONTROL_CRITERION}/round{w.k}",
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/control-{w.control}/round{w.k}",
        spec=train_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/control/{{dataset}}-{{model}}-seed{{seed}}-{{control}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/control/{{dataset}}-{{model}}-seed{{seed}}-{{control}}-round{{k}}.tsv"
    shell:
        "{DLTH} control --faces {params.faces} --imp {params.ticket} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} "
        "--name {wildcards.control} --spec {params.spec:q} > {log} 2>&1"


rule structured_round:
    """Structured round k: remove rate of the remaining conv filters (L1 norm), rewind, retrain."""
    input:
        unpack(prev_structured),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE + code("structured.py"),
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/mask.pt",
        channels=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/channels.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/structured-{{criterion}}/round{{k}}/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_structured(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/structured-{w.criterion}/round{w.k}",
        spec=retrain_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/structured_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/structured_round/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-round{{k}}.tsv"
    shell:
        "{DLTH} structured-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --spec {params.spec:q} > {log} 2>&1"


rule imp_round_rate:
    """IMP round k at another step size: prune rate of the remaining weights of round k-1."""
    input:
        unpack(prev_round_rate),
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}-rate{{rate}}/round{{k}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}-rate{{rate}}/round{{k}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/imp-{{criterion}}-rate{{rate}}/round{{k}}/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        prev=lambda w: str(Path(prev_round_rate(w)["checkpoint"]).parent),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/imp-{w.criterion}-rate{w.rate}/round{w.k}",
        spec=rate_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/imp_round_rate/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-rate{{rate}}-round{{k}}.log",
    benchmark:
        f"{BENCH}/imp_round_rate/{{dataset}}-{{model}}-seed{{seed}}-{{criterion}}-rate{{rate}}-round{{k}}.tsv"
    shell:
        "{DLTH} imp-round --faces {params.faces} --prev {params.prev} --dense {params.dense} "
        "--out {params.out} --model {wildcards.model} --seed {wildcards.seed} --round {wildcards.k} "
        "--criterion {wildcards.criterion} --rate {wildcards.rate} --spec {params.spec:q} > {log} 2>&1"


rule prune_init:
    """SNIP or GraSP: score θ0 on a few training batches, prune once to a sparsity, train once."""
    input:
        faces=f"{RESULTS}/{{dataset}}/faces/faces.npy",
        manifest=f"{RESULTS}/{{dataset}}/faces/manifest.csv",
        init=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/dense/init.pt",
        code=TRAIN_CODE,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{pai}}/sparsity{{pct}}/checkpoint.pt",
        mask=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{pai}}/sparsity{{pct}}/mask.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{model}}/seed{{seed}}/{{pai}}/sparsity{{pct}}/metrics.json",
    params:
        faces=lambda w: faces_dir(w.dataset),
        dense=lambda w: f"{run_dir(w)}/dense",
        out=lambda w: f"{run_dir(w)}/{w.pai}/sparsity{w.pct}",
        sparsity=pai_fraction,
        batches=config["prune_at_init"]["batches"],
        temperature=config["prune_at_init"]["temperature"],
        spec=train_spec,
    threads: config["threads"]
    resources:
        **gpu_job(),
    log:
        f"{LOGS}/prune_init/{{dataset}}-{{model}}-seed{{seed}}-{{pai}}-sparsity{{pct}}.log",
    benchmark:
        f"{BENCH}/prune_init/{{dataset}}-{{model}}-seed{{seed}}-{{pai}}-sparsity{{pct}}.tsv"
    shell:
        "{DLTH} prune-init --faces {params.faces} --dense {params.dense} --out {params.out} "
        "--model {wildcards.model} --seed {wildcards.seed} --method {wildcards.pai} "
        "--sparsity {params.sparsity} --batches {params.batches} "
        "--temperature {params.temperature} --spec {params.spec:q} > {log} 2>&1"
