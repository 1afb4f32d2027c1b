"""Pruning: masks and magnitude pruning, IMP criteria, rewinding, checkpoints on disk, SNIP/GraSP
saliency, structured (channel) masks, sparsity arithmetic and the method registry.
Imports core and models."""
