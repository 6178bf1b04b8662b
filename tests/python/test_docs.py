"""The examples in the package's docstrings run and print what they say."""

import doctest

import pytest

import pocketlm
import pocketlm.batch
import pocketlm.chat
import pocketlm.classify
import pocketlm.context
import pocketlm.errors
import pocketlm.grammar
import pocketlm.model
import pocketlm.probe
import pocketlm.sampling

MODULES = [pocketlm, pocketlm.batch, pocketlm.model, pocketlm.context, pocketlm.chat, pocketlm.errors, pocketlm.sampling,
           pocketlm.classify, pocketlm.probe, pocketlm.grammar]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(model_path, module, monkeypatch):
    monkeypatch.setenv("POCKETLM_THREADS", "1")   # steady on a busy 2-core machine; results do not depend on it
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, module.__name__)
    assert tests or module is pocketlm.errors
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0
