"""What is solved: the grid and its geometry (``grid``), the physical parameters (``params``), the initial
conditions and their registry (``initial``: the canonical problems, the held-out families, your own), and
exact solutions with observed-order fits (``exact``), and the Keller-Segel family's problems
(``keller_segel``: pks_blob, pks_ring, instability:K). A new problem goes into ``initial``
(:func:`~nsipf_torch.problems.initial.register_ic`)."""

from nsipf_torch.problems import keller_segel  # noqa: F401  (registers the Keller-Segel problems)
