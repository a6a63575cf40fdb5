"""``furnace twin tune``'s arguments (issue 16): an overshoot limit that is not a finite number
of kelvin, 0 or more, and a recipe that approaches no setpoint are each one line and exit
2, before anything is simulated."""

from __future__ import annotations

import pytest

from controller.cli import main
from tests.conftest import PROFILES, ROOT
from tests.integration.helpers import one_error_line

SMOKE = str(PROFILES / "smoke-600.toml")
BUILTIN = str(ROOT / "controller" / "builtin" / "sim.toml")


@pytest.mark.parametrize("limit", ["nan", "inf", "-inf", "-1", "abc", ""])
def test_an_overshoot_limit_that_is_no_kelvin_is_refused(
        limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["twin", "tune", SMOKE, "--station", BUILTIN, "--overshoot-max-k", limit])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code if isinstance(exc.code, int) else -1
    captured = capsys.readouterr()
    assert code == 2, captured.out
    assert "--overshoot-max-k" in one_error_line(captured.err)
    assert captured.out == ""
