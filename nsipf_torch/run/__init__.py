"""Running a simulation: one runner per method behind one interface (``runners``; made by name in
:mod:`nsipf_torch.methods`), the trackers the one time loop calls (``callbacks``), per-member diagnostics
(``diagnostics``) and the memory estimate checked before anything is allocated (``memory``)."""
