"""The agent file: strict (unknown keys name the closest known one), secrets hidden, the site
checked against --site, and the example file valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from streams.agent.cli import agent
from streams.agent.config import AgentConfig, load_agent_config
from streams.errors import GridshiftError

EXAMPLE = Path(__file__).resolve().parents[2] / "streams" / "examples" / "agent.toml"


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[ramp]\nmax_step_mwh = 2.0\n")
    with pytest.raises(
        GridshiftError, match=r"ramp\.max_step_mwh: unknown key \(did you mean 'max_step_mw'\?\)"
    ):
        load_agent_config(path)


def test_unknown_key_in_a_list_of_miners(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[[miners]]\nhost = "10.0.0.2"\nmax_w = 3000\nefficiency_j_per_th = 20\nmaxw = 1\n'
    )
    with pytest.raises(
        GridshiftError, match=r"miners\.0\.maxw: unknown key \(did you mean 'max_w'\?\)"
    ):
        load_agent_config(path)


def test_secrets_are_hidden_and_hosts_must_be_addresses() -> None:
    config = AgentConfig.parse(
        {
            "miners": [
                {
                    "host": "10.0.0.2",
                    "max_w": 3000,
                    "efficiency_j_per_th": 20,
                    "username": "root",
                    "password": "hunter2",
                }
            ],
            "gpu": {"hook": {"url": "http://127.0.0.1:9/scale", "token": "tok-secret"}},
        },
        "test",
    )
    assert "hunter2" not in repr(config) and "tok-secret" not in repr(config)
    with pytest.raises(GridshiftError, match=r"miners\.0\.host"):
        AgentConfig.parse(
            {"miners": [{"host": "miner-7", "max_w": 1, "efficiency_j_per_th": 1}]}, "t"
        )
    with pytest.raises(GridshiftError, match="exactly one of url or command"):
        AgentConfig.parse({"gpu": {"hook": {"timeout_s": 1}}}, "t")


def test_site_must_match_and_example_is_valid() -> None:
    config = load_agent_config(EXAMPLE)
    assert config.miners and config.for_site(config.site_id or "x").site_id == config.site_id
    with pytest.raises(GridshiftError, match="does not match"):
        config.for_site("another-site")


def test_cli_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(agent, ["--site", "site-a"], env={"GRIDSHIFT_KAFKA_BOOTSTRAP": ""})
    assert isinstance(result.exception, GridshiftError)
    assert "no broker" in str(result.exception)
    assert "--site" in CliRunner().invoke(agent, ["--help"]).output
