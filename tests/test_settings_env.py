"""Every `SOCRATEXT_*` variable is a setting or a documented other variable; a misspelt one is reported."""

from __future__ import annotations

import logging

import pytest

from socratext.settings import OTHER_VARIABLES, Settings, get_settings, unknown_variables


def test_a_misspelt_variable_is_reported_with_the_setting_it_resembles(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SOCRATEXT_BATCH_SIZ", "3")
    monkeypatch.setenv("SOCRATEXT_BATCH_SIZE", "4")
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="socratext"):
            settings = get_settings()
    finally:
        get_settings.cache_clear()
    assert settings.batch_size == 4
    warnings = [r.getMessage() for r in caplog.records if "SOCRATEXT_BATCH_SIZ " in r.getMessage() + " "]
    assert len(warnings) == 1 and "did you mean SOCRATEXT_BATCH_SIZE?" in warnings[0], warnings


def test_settings_and_other_variables_are_not_reported() -> None:
    env = {f"SOCRATEXT_{name.upper()}": "x" for name in Settings.model_fields}
    env |= dict.fromkeys(OTHER_VARIABLES, "x")
    odd = "SOCRATEXT_QWXZ_123"
    assert unknown_variables({**env, "PATH": "/bin", odd: "1"}) == [(odd, None)]
