"""Simulate the parabolic-hyperbolic Keller-Segel system: the flat entry script (installed as nsipf-simulate).

    python simulate.py --ic annuli                                   # the main job
    python simulate.py --method fdm --ic two_blobs --N 64 --out runs/fdm64
    python simulate.py --help                                        # every flag

The program lives in nsipf_torch/commands/simulate.py; the Python API in nsipf_torch/api.py.
"""
import sys

from nsipf_torch.commands.simulate import main

if __name__ == "__main__":
    sys.exit(main())
