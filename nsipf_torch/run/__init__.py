"""Running a simulation: one runner per method behind one interface (``runners``), the trackers the one
time loop calls (``callbacks``), per-member diagnostics (``diagnostics``) and the memory estimate checked
before anything is allocated (``memory``)."""
