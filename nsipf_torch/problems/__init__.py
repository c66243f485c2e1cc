"""What is solved: the grid and its geometry (``grid``), the physical parameters (``params``), the initial
conditions and their registry (``initial``: the canonical problems, the held-out families, your own), and
exact solutions with observed-order fits (``exact``). A new problem goes into ``initial``
(:func:`~nsipf_torch.problems.initial.register_ic`)."""
