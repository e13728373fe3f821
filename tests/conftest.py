"""`pytest --emitter 'CMD'`: the differential tests validate that emitter (README, the emitter protocol)."""
import shlex

import pytest

from harness.validate import DEFAULT_EMITTER


def pytest_addoption(parser):
    parser.addoption("--emitter", default=None,
                     help="emitter command to validate (CMD --config C --graph KIND --out FILE); default: the built-in")


@pytest.fixture(scope="session")
def emitter(request) -> tuple[str, ...]:
    command = request.config.getoption("--emitter")
    return tuple(shlex.split(command)) if command else DEFAULT_EMITTER
