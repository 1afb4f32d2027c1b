"""Foundations every layer uses: user errors, atomic files and metrics, how a job runs
(--device/--threads), what a run folder records. Imports nothing else of the package."""
