"""Grid solvers of the PDE system: the one finite-volume core (``finite_volume``: fluxes, the sub-step and
its tangent) over the shared stencils (``stencils``), its Cartesian face (``fd``, the FD reference) and its
radial face (``radial``, the CNN's training-data engine), and the c-equation's update (``c_equation``)."""
