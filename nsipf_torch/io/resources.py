"""Files that ship inside the package: the trained CNNs and the small converged FD references.

Both are found inside the package folder, so an installed wheel and a source checkout behave the same; the
repository's top-level ``checkpoints/`` is a link to ``nsipf_torch/checkpoints/`` (the design card's layout).
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CHECKPOINTS = PACKAGE_DIR / "checkpoints"
REFERENCES = PACKAGE_DIR / "reference"


def default_checkpoint(dim: int) -> Path:
    """The shipped CNN for a dimension, made by train.py's documented command (README)."""
    return CHECKPOINTS / f"nsipf_{dim}d.pt"


def reference_path(problem: str, dim: int) -> Path:
    """The converged FD reference ``fd_<problem>_<dim>d.npz`` (studies/make_reference_data.py)."""
    return REFERENCES / f"fd_{problem}_{dim}d.npz"
