"""Golden conformance: every reference case runs against minigen and must match at its tolerance.

One test per case, with the case id as the test id. `MINIGEN_GOLDEN_DIR=/path/to/cases` runs
another folder of cases in the same format instead of the bundled ones.
"""

import importlib
import pkgutil
import shutil

import pytest

from minigen.tests import conformance
from minigen.tests.conformance.cases import (
    BUNDLED_DIR,
    ENV_VAR,
    HANDLERS,
    SHARED_DIR,
    assert_outputs_match,
    case_folders,
    discover,
    load_case,
    run_case,
)

# each module of the conformance package registers the handlers of one area on import
for module in pkgutil.iter_modules(conformance.__path__):
    importlib.import_module(f"{conformance.__name__}.{module.name}")

CASE_FOLDERS, MISSING_REASON = discover()


@pytest.mark.parametrize("folder", CASE_FOLDERS, ids=[folder.name for folder in CASE_FOLDERS])
def test_golden_case(folder):
    case = load_case(folder)
    if case.component not in HANDLERS:
        pytest.fail(f"{case.id}: no handler for component {case.spec['component']}")
    assert_outputs_match(case, run_case(case))


def test_weight_carrying_cases_are_read_from_shared():
    if MISSING_REASON:
        pytest.skip(MISSING_REASON)
    if CASE_FOLDERS and CASE_FOLDERS[0].parent not in (BUNDLED_DIR, SHARED_DIR):
        pytest.skip(f"{ENV_VAR} is set: its folder replaces the bundled and shared cases")
    assert any(folder.parent == SHARED_DIR for folder in CASE_FOLDERS)


def test_golden_dir_variable_replaces_the_bundled_cases(tmp_path, monkeypatch):
    for name in ("math_scaling_edm", "guider_linear0"):
        shutil.copytree(BUNDLED_DIR / name, tmp_path / name)
    (tmp_path / "not_a_case").mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    folders, reason = discover()
    assert [folder.name for folder in folders] == ["guider_linear0", "math_scaling_edm"] and reason is None
    for folder in folders:
        case = load_case(folder)
        assert_outputs_match(case, run_case(case))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=ENV_VAR):
        discover()


def test_bundled_cases_are_identical_to_their_shared_folders():
    """The bundled copies keep the project self-contained; they must never drift from the reference's cases
    (which are regenerated from time to time, tolerances included)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} not found: nothing to compare the bundled cases with")
    drifted = []
    for folder in case_folders(BUNDLED_DIR):
        shared = SHARED_DIR / folder.name
        if not shared.is_dir():
            continue
        names = sorted(path.name for path in folder.iterdir())
        if names != sorted(path.name for path in shared.iterdir()) or any(
                (folder / name).read_bytes() != (shared / name).read_bytes() for name in names):
            drifted.append(folder.name)
    assert not drifted, f"bundled cases differ from {SHARED_DIR}: {drifted}; copy the shared folders over them"
