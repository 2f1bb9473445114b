"""factory.toml: a bad file names the file, the key, the line and the fix."""

import pytest

from cockpit.config import ConfigError, load_factory

GOOD = """
[factory]
name = "f"

[roles.builder]
model = "claude-sonnet-5-5"
max_tokens = 2048

[[products]]
name = "shop"
path = "products/shop"
test_command = "python -m pytest -q"
budget_usd = 2.5
"""


def test_good_file_loads(tmp_path):
    f = tmp_path / "factory.toml"
    f.write_text(GOOD)
    cfg = load_factory(f)
    assert cfg.product("shop").budget_usd == 2.5
    assert cfg.product_path("shop") == (tmp_path / "products/shop").resolve()
    assert cfg.store_path == tmp_path / "memory/cockpit.db"
    assert cfg.role("builder").max_tokens == 2048
    assert cfg.role("reviewer").max_tokens == 8192


def test_unknown_key_is_named_with_its_line(tmp_path):
    f = tmp_path / "factory.toml"
    f.write_text(GOOD.replace('test_command = "python -m pytest -q"', 'test_comand = "pytest"'))
    with pytest.raises(ConfigError) as e:
        load_factory(f)
    msg = str(e.value)
    assert f"{f}:12: unknown key 'products[0].test_comand'" in msg
    assert "'products[0].test_command' is required but missing" in msg


def test_bad_value_and_syntax(tmp_path):
    f = tmp_path / "factory.toml"
    f.write_text(GOOD.replace("max_tokens = 2048", "max_tokens = -1"))
    with pytest.raises(ConfigError, match=r"factory.toml:7: key 'roles.builder.max_tokens'"):
        load_factory(f)
    f.write_text("[factory\nname=1")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 1"):
        load_factory(f)
    with pytest.raises(ConfigError, match="no such file"):
        load_factory(tmp_path / "nope.toml")


def test_unknown_model_is_an_error_at_start_not_a_silent_zero(tmp_path):
    f = tmp_path / "factory.toml"
    f.write_text(GOOD.replace('model = "claude-sonnet-5-5"', 'model = "claude-imaginary-9"'))
    with pytest.raises(ConfigError, match=r"factory.toml:6: key 'roles.builder.model': no price for model"):
        load_factory(f)
    f.write_text(GOOD.replace('model = "claude-sonnet-5-5"', 'model = "claude-imaginary-9"')
                 + '\n[prices."claude-imaginary-9"]\ninput = 1.0\noutput = 2.0\n')
    assert load_factory(f).price_table().price("claude-imaginary-9").output == 2.0
