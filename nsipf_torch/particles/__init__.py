"""The particle side of SIPF (paper eqs. 32-34): deposition onto the grid (``deposit``), the classical
interpolators and the interpolator registry (``interp``), the Euler-Maruyama move with reflecting walls
(``move``), the pure batched time step (``sipf``) and particle sharding across processes
(``distributed``). A new interpolator is registered in ``interp``
(:func:`~nsipf_torch.particles.interp.register_interp`)."""
