"""Files: atomic writes and weights-only loads (``files``), a run's outputs (``output``), figures
(``plotting``), ParaView files (``vtk``) and the data shipped inside the package (``resources``)."""
