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


def test_every_setting_says_what_it_does_and_the_docs_table_is_generated_from_them() -> None:
    from pathlib import Path

    from socratext.settings import markdown_table

    assert all(f.description for f in Settings.model_fields.values())
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert doc.endswith(markdown_table()), "docs/configuration.md is stale: `socratext settings --markdown`"


@pytest.mark.parametrize(("variable", "value"), [
    ("SOCRATEXT_BATCH_SIZE", "0"), ("SOCRATEXT_DEVICE", "gpu"), ("SOCRATEXT_REVIEW_THRESHOLD", "-0.1"),
    ("SOCRATEXT_DELIVERY", "exactly-once"), ("SOCRATEXT_METRICS_PORT", "70000"),
    ("SOCRATEXT_S3_RETRY_ATTEMPTS", "0"), ("SOCRATEXT_OCR_BACKEND", "easyocr"),
])
def test_a_value_its_setting_refuses_is_an_error_that_names_the_variable(variable: str, value: str) -> None:
    from socratext.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=f"{variable}='{value}'"):
        load_settings({variable: value})


def test_values_at_the_bounds_are_accepted() -> None:
    from socratext.settings import load_settings

    s = load_settings({"SOCRATEXT_DEVICE": "cuda:1", "SOCRATEXT_METRICS_PORT": "-1",
                       "SOCRATEXT_REVIEW_THRESHOLD": "1.01", "SOCRATEXT_MODEL_POLL_S": "0",
                       "SOCRATEXT_WORKER_THREADS": "0", "SOCRATEXT_BATCH_WINDOW_S": "0"})
    assert (s.device, s.metrics_port, s.review_threshold, s.model_poll_s) == ("cuda:1", -1, 1.01, 0.0)


def test_the_settings_command_shows_values_masks_secrets_and_refuses_a_bad_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from socratext.cli import app

    monkeypatch.setenv("SOCRATEXT_BATCH_SIZE", "3")
    monkeypatch.setenv("SOCRATEXT_S3_SECRET_KEY", "hunter2-not-shown")
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["settings"])
        assert out.exit_code == 0, out.output
        assert "SOCRATEXT_BATCH_SIZE=3   (default 8)" in out.output
        assert "hunter2" not in out.output and "SOCRATEXT_S3_SECRET_KEY=**********" in out.output
        monkeypatch.setenv("SOCRATEXT_BATCH_SIZE", "0")
        get_settings.cache_clear()
        bad = CliRunner().invoke(app, ["settings"])
        assert bad.exit_code == 2 and "SOCRATEXT_BATCH_SIZE='0'" in bad.output
    finally:
        get_settings.cache_clear()


def test_a_worker_with_a_refused_value_stops_at_once_naming_it() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SOCRATEXT_DEVICE": "gpu"}
    done = subprocess.run([sys.executable, "-m", "streams.worker", "--stage", "extract"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "SOCRATEXT_DEVICE='gpu'" in done.stderr, done.stderr[-2000:]
