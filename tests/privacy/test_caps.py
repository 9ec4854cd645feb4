"""node.toml's privacy settings: caps, exemptions, and refusal of anything unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.errors import InputError
from accord.fl.node_home import NodeHome
from accord.privacy.caps import Cap, load_node_settings
from accord.privacy.events import Adversary

FULL = """
party = "cleveland"

[[caps]]
dataset = "train"
epsilon = 3.0
delta = 1e-5

[[caps]]
dataset = "train"
epsilon = 8
delta = 1e-6
adversary = "recipients_only"

[[caps]]
dataset = "test"
epsilon = 1.0
delta = 1e-5
adversary = "coordinator_and_recipients"

[exempt]
kinds = ["metrics"]
"""


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "node.toml").write_text(text)
    return home


def refusal(home: Path) -> str:
    with pytest.raises(InputError) as info:
        load_node_settings(home)
    message = str(info.value)
    assert "\n" not in message
    assert str(home / "node.toml") in message
    return message


def test_full_settings_parse(tmp_path: Path) -> None:
    settings = load_node_settings(write(tmp_path, FULL))
    assert settings.party == "cleveland"
    assert settings.exempt_kinds == frozenset({"metrics"})
    assert settings.is_exempt("metrics") and not settings.is_exempt("row_count")
    assert settings.datasets == ["train", "test"]
    train = settings.caps_for("train")
    assert train == [
        Cap(dataset="train", epsilon=3.0, delta=1e-5),
        Cap(dataset="train", epsilon=8.0, delta=1e-6, adversary=Adversary.RECIPIENTS_ONLY),
    ]
    # The stronger adversary is the default.
    assert train[0].adversary is Adversary.COORDINATOR_AND_RECIPIENTS
    assert settings.caps_for("test")[0].epsilon == 1.0
    assert settings.caps_for("validation") == []


def test_a_home_written_by_node_home_has_no_caps(tmp_path: Path) -> None:
    NodeHome(tmp_path / "home", "north")
    settings = load_node_settings(tmp_path / "home")
    assert settings.party == "north"
    assert settings.caps == [] and settings.exempt_kinds == frozenset()


def test_no_node_toml_means_no_caps(tmp_path: Path) -> None:
    assert load_node_settings(tmp_path).caps == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('party = "a"\nbudget = 3\n', "budget: unknown key"),
        (
            'party = "a"\n[[caps]]\ndataset = "train"\nepsilom = 3.0\ndelta = 1e-5\n',
            "caps[0].epsilom: unknown key; did you mean 'epsilon'?",
        ),
        (
            'party = "a"\n[exempt]\nkind = ["metrics"]\n',
            "exempt.kind: unknown key; did you mean 'kinds'?",
        ),
        ('party = "a"\n[override]\njob = true\n', "override: unknown key"),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, text))


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ('dataset = "train"\nepsilon = 3.0\ndelta = 1e-5\nadversary = "coordinator"', "adversary"),
        ('dataset = "train"\nepsilon = -1.0\ndelta = 1e-5', "caps[0].epsilon"),
        ('dataset = "train"\nepsilon = inf\ndelta = 1e-5', "caps[0].epsilon"),
        ('dataset = "train"\nepsilon = 3.0\ndelta = 1.5', "caps[0].delta"),
        ('dataset = "train"\nepsilon = 3.0', "caps[0].delta: required key is missing"),
    ],
)
def test_bad_values_are_refused(tmp_path: Path, cap: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, f'party = "a"\n[[caps]]\n{cap}\n'))


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    assert "not valid TOML" in refusal(write(tmp_path, "party = \n"))
