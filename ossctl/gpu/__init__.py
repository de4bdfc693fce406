"""GPU memory: NVML snapshots (nvml.py), VRAM estimates (fit.py), watch loop (watch.py)
and the deploy preflight check (preflight.py)."""
