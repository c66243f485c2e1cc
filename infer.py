"""Infer chi and gamma from observed densities: the flat entry script (installed as nsipf-infer).

    python infer.py --synthetic two_blobs --dim 2 --N 64 --chi 1.3 --gamma 0.012 --noise 0.05 --seed 0 --write-data obs.npz
    python infer.py --data obs.npz --out runs/infer
    python infer.py --help          # every flag, the data format and what is identifiable

The program lives in nsipf_torch/commands/infer.py; the method in nsipf_torch/inference/fit.py.
"""
import sys

from nsipf_torch.commands.infer import main

if __name__ == "__main__":
    sys.exit(main())
