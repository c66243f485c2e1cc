"""The command-line programs: each module has ``main(argv) -> exit status``, run by the flat scripts at the
repository root (``python simulate.py``) and by the console commands an install provides
(``nsipf-simulate``, ``nsipf-train``, ``nsipf-benchmark``, ``nsipf-infer``)."""
