# The training rules of the pruned networks: one rule per method family, generated from the
# method registry (deepfake_lth.stages.methods.FAMILIES). A family's declaration says what a
# level's job reads, writes and is passed (deepfake_lth.workflow.jobs); adding a family adds
# its rule here with no edit. Each job writes {method}/{level}/ of one run, e.g.
# results/{dataset}/{model}/seed{seed}/imp-global/round3/.


for family in methods.FAMILIES:

    rule:
        name:
            family.rule
        input:
            unpack(jobs.level_inputs(config, family)),
            code=jobs.level_code(family),
        output:
            **jobs.level_outputs(RESULTS, family),
        log:
            f"{LOGS}/{family.rule}/{{dataset}}-{{model}}-seed{{seed}}-{{method}}-{{level}}.log",
        benchmark:
            f"{BENCH}/{family.rule}/{{dataset}}-{{model}}-seed{{seed}}-{{method}}-{{level}}.tsv"
        wildcard_constraints:
            method=family.method_pattern(),
            level=family.level_pattern(),
        conda:
            CONDA_ENV
        threads: config["threads"]
        resources:
            **gpu_job(),
        params:
            stage=family.stage,
            args=jobs.level_arguments(config, family),
        shell:
            "python -m deepfake_lth {params.stage} {params.args} --threads {threads} > {log} 2>&1 "
            "|| (tail -n 3 {log} >&2; exit 1)"
