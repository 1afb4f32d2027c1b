"""Lottery-ticket pruning study of deepfake detectors."""
__version__ = "0.1.0"
