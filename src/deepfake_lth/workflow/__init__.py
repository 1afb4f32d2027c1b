"""Glue to the Snakemake workflow: the validated config (schema defaults, registries) and the
resources of GPU jobs. Imports core, models and pruning."""
