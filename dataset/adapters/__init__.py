"""Named datasets: each module declares a `DATASET` (dataset.protocol.NamedDataset) with its depth units, camera,
evaluation protocol and folder scan. dataset.registry collects them; nothing here imports the command line."""
