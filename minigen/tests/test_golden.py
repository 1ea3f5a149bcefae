"""Golden conformance: every reference case runs against minigen and must match at its tolerance.

One test per case, with the case id as the test id. `MINIGEN_GOLDEN_DIR=/path/to/cases` runs
another folder of cases in the same format instead of the bundled ones.
"""

import importlib
import pkgutil

import pytest

from minigen.tests import conformance
from minigen.tests.conformance.cases import HANDLERS, assert_outputs_match, discover, load_case, pending_reason, run_case

# each module of the conformance package registers the handlers of one area on import
for module in pkgutil.iter_modules(conformance.__path__):
    importlib.import_module(f"{conformance.__name__}.{module.name}")

CASE_FOLDERS, MISSING_REASON = discover()


@pytest.mark.parametrize("folder", CASE_FOLDERS, ids=[folder.name for folder in CASE_FOLDERS])
def test_golden_case(folder):
    case = load_case(folder)
    if case.component not in HANDLERS:
        reason = pending_reason(case.id)
        if reason is None:
            pytest.fail(f"{case.id}: no handler for component {case.spec['component']}")
        pytest.skip(f"{case.id}: {reason}")
    assert_outputs_match(case, run_case(case))


def test_weight_carrying_cases_were_found():
    if MISSING_REASON:
        pytest.skip(MISSING_REASON)
    assert any(folder.name.startswith(("nn_", "vae_")) for folder in CASE_FOLDERS) or CASE_FOLDERS
