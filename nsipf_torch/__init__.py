"""nsipf_torch: the neural stochastic interacting particle-field method for the parabolic-hyperbolic
Keller-Segel system, as batched PyTorch tensors (Kim & Xin, arXiv 2510.13199)."""
from .grid import Grid, resolve_device, resolve_dtype
from .initial import get_ic, known_ics, load_ic_file, register_ic
from .inference import infer
from .metrics import block_average, rel_l2
from .params import Params

__version__ = "0.1.0"
