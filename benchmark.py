"""Benchmarks: the paper's runtime tables side by side: the flat entry script (installed as nsipf-benchmark).

    python benchmark.py                     # the quick suite
    python benchmark.py --suite gpu --device cuda
    python benchmark.py --help              # every flag

The program lives in nsipf_torch/commands/benchmark.py.
"""
import sys

from nsipf_torch.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
