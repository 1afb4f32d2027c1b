"""Training: the fit loop (one training step, an epoch, evaluation and early stopping),
resume states, scores, device and seeding. Imports core, data and pruning."""
