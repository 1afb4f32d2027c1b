"""Data: acquire a dataset, sample frames and crop faces (MTCNN), pack them with splits, and
read the packed store. Imports core only."""
