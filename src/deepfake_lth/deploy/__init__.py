"""Deployment: compact ticket files and detection on new videos or images."""
