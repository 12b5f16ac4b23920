"""One horizon model for the worker's settings, scenario files and the demo, validated alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.backtest.scenario import Scenario
from streams.engine.horizon import HorizonConfig
from streams.errors import GridshiftError
from streams.settings import load_settings


def test_settings_and_scenarios_read_the_same_model_with_the_live_default() -> None:
    assert Scenario.model_fields["horizon"].annotation is HorizonConfig
    assert load_settings().horizon_config() == HorizonConfig()
    assert load_settings().horizon() == HorizonConfig().build()
    assert HorizonConfig().build().n_steps == 35  # 12 x 5 min, then hourly to 24 h


def test_a_horizon_that_does_not_fit_is_refused_the_same_way_everywhere() -> None:
    with pytest.raises(ValidationError, match="fine steps alone are longer"):
        HorizonConfig(fine_steps=40, fine_minutes=60, hours=24)
    with pytest.raises(GridshiftError, match="fine steps alone are longer"):
        load_settings(horizon_fine_steps=40, horizon_fine_minutes=60)
    with pytest.raises(ValidationError, match="fine_step"):
        HorizonConfig.model_validate({"fine_step": 4})  # a typo is an error, not a default
