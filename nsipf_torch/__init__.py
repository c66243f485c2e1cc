"""nsipf_torch: the neural stochastic interacting particle-field method for the parabolic-hyperbolic
Keller-Segel system, as batched PyTorch tensors (Kim & Xin, arXiv 2510.13199).

    import nsipf_torch as nt
    r = nt.simulate("two_blobs", method="nsipf", N=32, P=20_000, T=0.2)
    r.rho.shape          # (members, snapshots, N, N, N)
    r.save("runs/tb")    # config.json, snapshots, diagnostics, figures

See README.md ("Python API") and docs/EXTENDING.md.
"""
from nsipf_torch.api import Result, SimConfig, simulate
from nsipf_torch.run.callbacks import Callback, Checkpoint, ProgressBar, Snapshots, StopOnNonFinite, TensorBoard
from nsipf_torch.problems.grid import Grid, resolve_device, resolve_dtype
from nsipf_torch.inference.fit import infer
from nsipf_torch.problems.initial import FunctionIC, GriddedIC, InitialCondition, get_ic, known_ics, load_ic_file, register_ic
from nsipf_torch.metrics import block_average, rel_l2
from nsipf_torch.neural.model import load_model
from nsipf_torch.problems.params import Params
from nsipf_torch.neural.training import TrainConfig, evaluate, train

__version__ = "0.1.0"
