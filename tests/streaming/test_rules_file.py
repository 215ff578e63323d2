"""A rules file is checked whole when it is loaded: a mistake is one line naming the key."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from include.errors import ClimateWatchError
from include.settings import load_settings
from streaming.rules import (
    DEFAULT_RULES_FILE,
    RULE_KEYS,
    RULES,
    RegionHistory,
    load_rules,
    rules_problems,
)
from tests.fixtures.settings import settings_env

pytestmark = pytest.mark.unit

# A valid file with every rule and every key (the shipped file, read as data).
SHIPPED = tomllib.loads(DEFAULT_RULES_FILE.read_text())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    """The one-line message load_rules refuses ``text`` with."""
    path = write(tmp_path, text)
    with pytest.raises(ClimateWatchError) as caught:
        load_rules(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"rules file {path}: "), message
    return message.removeprefix(f"rules file {path}: ")


def test_the_shipped_rules_file_loads() -> None:
    rules = load_rules()
    assert (rules.window_ms, rules.lateness_ms) == (60_000, 30_000)
    assert set(rules.rules) == set(RULES)
    assert rules_problems(SHIPPED) == []
    assert rules.for_region("heat", "dakar")["threshold_c"] == 38.0


def test_a_small_file_with_defaults_loads(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, '[rules.heat]\nthreshold_c = 30\nseverity = "info"\n'))
    assert (rules.window_ms, rules.lateness_ms) == (60_000, 30_000)
    assert load_rules(write(tmp_path, "")).rules == {}  # no rule at all: nothing fires
    fractional = load_rules(write(tmp_path, "[windows]\nsize_seconds = 1.5\n"))
    assert fractional.window_ms == 1500


# (rule, a required key)
REQUIRED = [
    (rule, key) for rule, keys in RULE_KEYS.items() for key, spec in keys.items() if spec.required
]


@pytest.mark.parametrize("rule, key", REQUIRED, ids=[f"{r}.{k}" for r, k in REQUIRED])
def test_each_rule_without_a_required_key_is_refused(tmp_path: Path, rule: str, key: str) -> None:
    assert (
        refused(tmp_path, f"[rules.{rule}]\nenabled = true\n") == f"rules.{rule}.{key} is missing"
    )
    assert refused(tmp_path, f'[rules.{rule}]\nseverity = "info"\n') == (
        f"rules.{rule}.{key} is missing"
    )


def test_a_disabled_rule_needs_no_settings(tmp_path: Path) -> None:
    text = "".join(f"[rules.{rule}]\nenabled = false\n" for rule in RULES)
    assert load_rules(write(tmp_path, text)).rules["heat"] == {"enabled": False}


ABSURD = [
    ("windows", "size_seconds", "0.0001", "must be at least 1"),
    ("windows", "size_seconds", "0", "must be at least 1"),
    ("windows", "size_seconds", "-60", "must be at least 1"),
    ("windows", "size_seconds", "86401", "must be at most 86400"),
    ("windows", "size_seconds", "inf", "must be a finite number"),
    ("windows", "size_seconds", "nan", "must be a finite number"),
    ("windows", "allowed_lateness_seconds", "-1", "must be at least 0"),
    ("windows", "allowed_lateness_seconds", "1e9", "must be at most 86400"),
    ("rules.heat", "threshold_c", "300", "must be at most 60"),
    ("rules.heat", "threshold_c", "-inf", "must be a finite number"),
    ("rules.cold", "threshold_c", "-273.15", "must be at least -90"),
    ("rules.drastic_change", "delta_c", "0", "must be greater than 0"),
    ("rules.drastic_change", "delta_c", "-8", "must be greater than 0"),
    ("rules.drastic_change", "delta_c", "1000", "must be at most 150"),
    ("rules.drastic_change", "windows_back", "0", "must be at least 1"),
    ("rules.drastic_change", "windows_back", "65", "must be at most 64"),
    ("rules.drastic_change", "windows_back", "2.5", "must be a whole number"),
    ("rules.silent_sensor", "silent_seconds", "-300", "must be at least 1"),
    ("rules.silent_sensor", "silent_seconds", "0", "must be at least 1"),
    ("rules.silent_sensor", "silent_seconds", "300000000", "must be at most 604800"),
    ("rules.bad_data", "max_invalid_share", "1.5", "must be at most 1"),
    ("rules.bad_data", "max_invalid_share", "-0.1", "must be at least 0"),
    ("rules.bad_data", "min_records", "0", "must be at least 1"),
    ("rules.bad_data", "min_records", "-10", "must be at least 1"),
    ("rules.region_silent", "silent_seconds", "-1", "must be at least 1"),
    ("rules.input_silent", "silent_seconds", "0.5", "must be at least 1"),
]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


# each table of the shipped file, as TOML lines to write back with one value changed
TABLES = {"windows": SHIPPED["windows"]} | {f"rules.{r}": c for r, c in SHIPPED["rules"].items()}


def shipped_with(table: str, key: str, value: str) -> str:
    """The shipped file's ``table`` (only) with ``key = value``."""
    lines = {k: toml_value(v) for k, v in TABLES[table].items()} | {key: value}
    return f"[{table}]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items())


@pytest.mark.parametrize(
    "table, key, value, words", ABSURD, ids=[f"{t}.{k}={v}" for t, k, v, _ in ABSURD]
)
def test_an_absurd_value_is_refused(
    tmp_path: Path, table: str, key: str, value: str, words: str
) -> None:
    assert load_rules(write(tmp_path, shipped_with(table, key, "1" if key != "delta_c" else "8")))
    message = refused(tmp_path, shipped_with(table, key, value))
    assert message.startswith(f"{table}.{key} {words}, not "), message
    assert "more)" not in message  # the one mistake, nothing else


def test_drastic_change_looks_no_further_back_than_the_history_keeps() -> None:
    assert RULE_KEYS["drastic_change"]["windows_back"].high == RegionHistory().means.maxlen


WRONG_TYPES = [
    ("windows", "size_seconds", '"60"', "must be a number, not '60'"),
    ("windows", "allowed_lateness_seconds", "true", "must be a number, not True"),
    ("rules.heat", "threshold_c", '"30"', "must be a number, not '30'"),
    ("rules.heat", "threshold_c", "[30]", "must be a number, not [30]"),
    ("rules.cold", "threshold_c", "1979-05-27", "must be a number, not datetime.date(1979, 5, 27)"),
    ("rules.bad_data", "min_records", "false", "must be a number, not False"),
    ("rules.drastic_change", "delta_c", "{ c = 8 }", "must be a number, not {'c': 8}"),
    ("rules.heat", "enabled", '"yes"', "must be true or false, not 'yes'"),
    ("rules.heat", "enabled", "1", "must be true or false, not 1"),
    ("rules.heat", "severity", '"fatal"', "must be one of info, warning, critical, not 'fatal'"),
    (
        "rules.heat",
        "severity",
        '"WARNING"',
        "must be one of info, warning, critical, not 'WARNING'",
    ),
    ("rules.input_silent", "severity", "3", "must be one of info, warning, critical, not 3"),
]


@pytest.mark.parametrize(
    "table, key, value, words", WRONG_TYPES, ids=[f"{t}.{k}={v}" for t, k, v, _ in WRONG_TYPES]
)
def test_a_value_of_the_wrong_type_is_refused(
    tmp_path: Path, table: str, key: str, value: str, words: str
) -> None:
    assert refused(tmp_path, shipped_with(table, key, value)) == f"{table}.{key} {words}"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[rules.hot]\nthreshold_c = 1\n", "rules: unknown rule(s) ['hot']; known: "),
        ("[rules.heat]\ntreshold_c = 30\n", "rules.heat.treshold_c is not a setting here (known: "),
        ("[rules.heat]\nthreshold_c = 30\ndelta_c = 8\n", "rules.heat.delta_c is not a setting"),
        ("[windows]\nsize = 60\n", "windows.size is not a setting here (known: size_seconds, "),
        ("[window]\nsize_seconds = 60\n", "[window] is not a section of a rules file"),
        ("heat = 30\n", "[heat] is not a section of a rules file"),
        ("rules = 5\n", "rules must be a table ([rules]), not 5"),
        ("windows = [60]\n", "windows must be a table ([windows]), not [60]"),
        ("[rules]\nheat = 30\n", "rules.heat must be a table ([rules.heat]), not 30"),
    ],
    ids=[
        "unknown-rule",
        "misspelt-key",
        "another-rule's-key",
        "unknown-window-key",
        "unknown-section",
        "top-level-value",
        "rules-not-a-table",
        "windows-not-a-table",
        "rule-not-a-table",
    ],
)
def test_unknown_rules_keys_and_sections_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    assert refused(tmp_path, text).startswith(message)


HEAT = "[rules.heat]\nthreshold_c = 30.0\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            HEAT + "[regions.dakar.heat]\nthreshold_c = 380\n",
            "regions.dakar.heat.threshold_c must be at most 60, not 380",
        ),
        (
            HEAT + '[regions.dakar.heat]\nthreshold_c = "38"\n',
            "regions.dakar.heat.threshold_c must be a number, not '38'",
        ),
        (
            HEAT + "[regions.dakar.heat]\nthreshhold_c = 38\n",
            "regions.dakar.heat.threshhold_c is not a setting here",
        ),
        (
            HEAT + '[regions.dakar.heat]\nseverity = "urgent"\n',
            "regions.dakar.heat.severity must be one of info, warning, critical, not 'urgent'",
        ),
        (
            HEAT + "[regions.dakar.hot]\nthreshold_c = 38\n",
            "regions.dakar: unknown rule(s) ['hot']",
        ),
        (
            "[regions.oslo.silent_sensor]\nsilent_seconds = -5\n",
            "regions.oslo.silent_sensor.silent_seconds must be at least 1, not -5",
        ),
        (
            "[regions.oslo.bad_data]\nmax_invalid_share = 2\n",
            "regions.oslo.bad_data.max_invalid_share must be at most 1, not 2",
        ),
        (  # an override of a rule with no defaults must say everything itself
            '[regions.oslo.cold]\nseverity = "critical"\n',
            "regions.oslo.cold.threshold_c is missing (neither [rules.cold] nor "
            "[regions.oslo.cold] sets it)",
        ),
        (  # a region turns on a rule that is off (and incomplete) by default
            "[rules.cold]\nenabled = false\n[regions.oslo.cold]\nenabled = true\n",
            "regions.oslo.cold.threshold_c is missing",
        ),
        (
            "[rules.input_silent]\nsilent_seconds = 60\n"
            "[regions.oslo.input_silent]\nsilent_seconds = 5\n",
            "regions.oslo.input_silent: input_silent watches the whole input, not one region",
        ),
        ("[regions]\noslo = 5\n", "regions.oslo must be a table ([regions.oslo]), not 5"),
        (
            "[regions.oslo]\ncold = -20\n",
            "regions.oslo.cold must be a table ([regions.oslo.cold]), not -20",
        ),
        ("regions = 'oslo'\n", "regions must be a table ([regions]), not 'oslo'"),
    ],
    ids=[
        "absurd",
        "wrong-type",
        "unknown-key",
        "bad-severity",
        "unknown-rule",
        "negative-silence",
        "share-above-one",
        "incomplete-without-defaults",
        "enabled-by-a-region",
        "whole-input-rule",
        "region-not-a-table",
        "override-not-a-table",
        "regions-not-a-table",
    ],
)
def test_a_bad_region_override_is_refused(tmp_path: Path, text: str, message: str) -> None:
    assert refused(tmp_path, text).startswith(message)


def test_a_region_may_turn_a_rule_off_or_complete_it(tmp_path: Path) -> None:
    text = (
        "[rules.cold]\nenabled = false\n"
        "[regions.oslo.cold]\nenabled = true\nthreshold_c = -20\n"
        "[regions.dakar.heat]\nenabled = false\n"
    )
    rules = load_rules(write(tmp_path, text))
    assert rules.for_region("cold", "oslo")["threshold_c"] == -20


def test_every_mistake_is_counted_the_first_is_named(tmp_path: Path) -> None:
    text = "[windows]\nsize_seconds = 0\n[rules.heat]\nseverity = 'loud'\n"
    assert refused(tmp_path, text) == (
        "windows.size_seconds must be at least 1, not 0 (and 2 more)"  # severity, threshold_c
    )


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ClimateWatchError, match="rules file not found"):
        load_rules(tmp_path / "missing.toml")
    with pytest.raises(ClimateWatchError, match=r"cannot be read") as caught:
        load_rules(tmp_path)  # a directory
    assert "\n" not in str(caught.value)
    (tmp_path / "latin1.toml").write_bytes("# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ClimateWatchError, match="cannot be read"):
        load_rules(tmp_path / "latin1.toml")
    with pytest.raises(ClimateWatchError, match="is not valid TOML"):
        load_rules(write(tmp_path, "[windows\n"))


def test_the_validator_raises_nothing_but_its_error_on_odd_files(tmp_path: Path) -> None:
    odd = [
        "[regions.x]\n",
        "[rules.heat]\n",
        "[[rules.heat]]\nthreshold_c = 1\n",
        "[[regions]]\n",
        "[regions.'']\nheat = {}\n",
        "[windows]\nsize_seconds = 1e400\n",
        "[rules.drastic_change]\ndelta_c = 8\nwindows_back = 1e300\n",
        "[rules.bad_data]\nmax_invalid_share = 0.2\nmin_records = -inf\n",
    ]
    for text in odd:
        path = write(tmp_path, text)
        try:
            load_rules(path)
        except ClimateWatchError as exc:
            assert "\n" not in str(exc)


def test_climatewatch_stream_refuses_a_bad_rules_file_at_once(tmp_path: Path) -> None:
    """Before anything connects: no broker listens on the settings' port."""
    rules = write(tmp_path, "[windows]\nsize_seconds = 0.0001\n[rules.heat]\nenabled = true\n")
    settings = load_settings(data_dir=tmp_path / "data", bootstrap_servers="127.0.0.1:9")
    env = {**settings_env(settings), "CLIMATEWATCH_RULES_FILE": str(rules)}
    done = subprocess.run(
        [sys.executable, "-m", "include.ops.cli", "stream", "--max-runtime", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.strip().splitlines() == [
        f"climatewatch: error: rules file {rules}: windows.size_seconds must be at least 1, "
        "not 0.0001 (and 1 more)"
    ]
    assert re.search("Traceback", done.stdout + done.stderr) is None
