"""The public API listed in ``accord.__all__`` resolves, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import accord


def test_every_public_name_resolves() -> None:
    for name in accord.__all__:
        assert getattr(accord, name) is not None, name


def test_errors_form_one_tree_with_exit_codes() -> None:
    errors = [getattr(accord, n) for n in accord.__all__ if n.endswith("Error")]
    assert all(issubclass(e, accord.AccordError) for e in errors)
    assert accord.InputError.exit_code == 2 and accord.RefusedError.exit_code == 3
    assert accord.AccordError.exit_code == 1 and accord.TooFewPartiesError.exit_code == 3


def test_import_accord_does_not_import_torch() -> None:
    code = "import sys, accord; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_all_lists_every_lazy_name() -> None:
    from accord import _LAZY

    assert set(_LAZY) <= set(accord.__all__)
