"""Markers in the py-pde style: ``slow`` and ``gpu`` tests are skipped by default.

    pytest --runslow      also runs the slow validation tests
    pytest --rungpu       also runs the GPU tests (they still skip when CUDA is absent)
"""
import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--rungpu", action="store_true", default=False, help="run tests marked gpu")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    skip_gpu = pytest.mark.skip(reason="gpu: run with --rungpu")
    skip_nocuda = pytest.mark.skip(reason="gpu: CUDA is not available")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords:
            if not config.getoption("--rungpu"):
                item.add_marker(skip_gpu)
            elif not torch.cuda.is_available():
                item.add_marker(skip_nocuda)


def pytest_configure(config):
    # The tests run small problems, where one thread beats two (no OpenMP hand-offs), and a loaded
    # machine makes a second thread's spin-waits far worse (measured: the FD tests 4x slower with 2).
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same global seed (tests also pass their own generators)."""
    torch.manual_seed(0)
    yield
