"""Analysis of trained runs: Grad-CAM, separability, latency, and the statistics behind the
report (intervals, winning tickets, claims). Imports the layers below."""
