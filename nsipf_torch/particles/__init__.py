"""The particle side of SIPF (paper eqs. 32-34): deposition onto the grid (``deposit``), the classical
interpolators (``interp``: trilinear, cubic B-spline), the Euler-Maruyama move with reflecting walls
(``move``), the pure batched time step (``sipf``) and particle sharding across processes
(``distributed``). A new interpolator is registered in the method table
(:func:`nsipf_torch.methods.register_interp`)."""
