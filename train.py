"""Train the neural interpolator's CNN on radial solutions: the flat entry script (installed as nsipf-train).

    python train.py                 # 3D -> checkpoints/nsipf_3d.pt (the shipped model)
    python train.py --dim 2         # 2D -> checkpoints/nsipf_2d.pt
    python train.py --help          # every flag

The program lives in nsipf_torch/commands/train.py.
"""
import sys

from nsipf_torch.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
