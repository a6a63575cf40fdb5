"""The station's ``[opcua]`` section and its users' passwords (read from the environment,
never from the file)."""

from __future__ import annotations

import pytest

from controller.opcua.server import parse_data
from controller.recipe.opcua_config import user_passwords
from controller.recipe.station import load_station_text
from drivers.errors import ConfigurationError
from tests.conftest import ROOT

TEXT = (ROOT / "stations" / "example-eurotherm-alicat.toml").read_text()
SECTION = '''
[opcua]
host = "0.0.0.0"
port = 4841

[[opcua.users]]
name = "ann"
password_env = "FURNACE_OPCUA_ANN"
'''


def test_the_section_is_optional_and_defaults_to_loopback() -> None:
    assert load_station_text(TEXT, "st.toml").opcua is None
    config = load_station_text(TEXT + '\n[opcua]\n', "st.toml").opcua
    assert config is not None
    assert (config.host, config.port, config.users) == ("127.0.0.1", 4840, ())


def test_users_name_the_variable_that_holds_the_password() -> None:
    config = load_station_text(TEXT + SECTION, "st.toml").opcua
    assert config is not None
    assert user_passwords(config, {"FURNACE_OPCUA_ANN": "s3cret"}) == {"ann": "s3cret"}
    with pytest.raises(ConfigurationError, match="FURNACE_OPCUA_ANN"):
        user_passwords(config, {})


@pytest.mark.parametrize(("old", "new", "field"), [
    ('password_env = "FURNACE_OPCUA_ANN"', 'password = "s3cret"', "opcua.users.0"),
    ("port = 4841", "port = 70000", "opcua.port"),
    ('name = "ann"', 'name = "ann bob"', "opcua.users.0.name"),
])
def test_bad_sections_are_one_line_naming_the_field(old: str, new: str, field: str) -> None:
    with pytest.raises(ConfigurationError, match=field.replace(".", r"\.")):
        load_station_text(TEXT + SECTION.replace(old, new), "st.toml")


def test_confirm_data_is_name_equals_value_separated_by_semicolons() -> None:
    assert parse_data("") == ()
    assert parse_data("pitch_g=0.6; acid_g = 1.4;") == (("pitch_g", "0.6"), ("acid_g", "1.4"))
    with pytest.raises(ConfigurationError, match="not NAME=VALUE"):
        parse_data("pitch_g")
