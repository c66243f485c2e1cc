"""The runtime tables of nsipf-benchmark: timing through simulate()'s loop (timing), the tables (tables,
fast_path) and their markdown (render). The command is nsipf_torch/commands/benchmark.py."""
