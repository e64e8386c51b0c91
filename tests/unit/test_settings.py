"""Settings read from the environment: the follower's place (ADR 0020) and the numbers."""

from __future__ import annotations

import pytest

from service.settings import Settings, SettingsError


def test_the_follower_runs_in_a_thread_unless_the_environment_says_process() -> None:
    assert Settings.from_env({}).follower == "thread"
    assert Settings.from_env({"LEDGER_FOLLOWER": "process"}).follower == "process"
    assert Settings.from_env({"LEDGER_FOLLOWER": "thread"}).follower == "thread"


def test_an_unknown_follower_place_is_refused_naming_the_setting_and_the_choices() -> None:
    with pytest.raises(SettingsError, match=r"LEDGER_FOLLOWER must be one of thread, process"):
        Settings.from_env({"LEDGER_FOLLOWER": "fork"})


def test_a_bad_number_is_refused_as_a_number() -> None:
    with pytest.raises(SettingsError, match="bad number"):
        Settings.from_env({"LEDGER_SNAPSHOT_INTERVAL": "many"})
