"""The lab beside the library: studies, reproductions, calibrations and timing scripts. Each runs from the
repository root as ``python -m studies.NAME`` over the public API of :mod:`nsipf_torch`; none ships in the
wheel."""
