"""A/B experiments between served model versions: configuration (config.py), sticky assignment (assign.py),
what the registry keeps loaded for them (active.py), per-arm counters (counters.py) and the readout
(readout.py). docs/deploy.md, "Experiments"."""
