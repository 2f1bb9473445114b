"""The README's factory.toml reference stays true: its keys are exactly the schema's, with the schema's defaults,
and `cockpit init` writes every one of them."""

import re
import tomllib
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cockpit.config import FactoryConfig, load_factory
from cockpit.cli.init import factory_template

README = Path(__file__).resolve().parents[1] / "README.md"


def reference_section() -> str:
    text = README.read_text()
    start = text.index("## factory.toml reference")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def readme_rows() -> dict[str, str]:
    """key -> default cell, from the table rows whose first cell is a `key`."""
    rows = {}
    for line in reference_section().splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} is listed twice"
            rows[m.group(1)] = m.group(2).strip()
    return rows


def schema_defaults(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Walk the pydantic models recursively: nested sections, dicts of tables (<name>), lists of tables ([])."""
    out: dict[str, object] = {}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        tp, key = field.annotation, prefix + name
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out |= schema_defaults(tp, key + ".")
        elif origin is dict and isinstance(args[1], type) and issubclass(args[1], BaseModel):
            out |= schema_defaults(args[1], key + ".<*>.")
        elif origin is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            out |= schema_defaults(args[0], key + "[].")
        else:
            out[key] = field.get_default(call_default_factory=True)
    return out


def normalise(key: str) -> str:
    return re.sub(r"<[^>]+>", "<*>", key)


def test_every_readme_key_is_in_the_schema_and_every_schema_key_in_the_readme():
    documented = {normalise(k) for k in readme_rows()}
    schema = set(schema_defaults(FactoryConfig))
    assert documented - schema == set(), "README documents keys the schema does not accept"
    assert schema - documented == set(), "schema keys missing from the README's factory.toml reference"


def test_readme_defaults_are_the_schema_defaults():
    schema = schema_defaults(FactoryConfig)
    for key, cell in readme_rows().items():
        default = schema[normalise(key)]
        if default is PydanticUndefined:
            assert cell == "required", key
        elif default is None:
            assert cell == "none", key
        else:
            assert cell.startswith("`") and tomllib.loads(f"v = {cell.strip('`')}")["v"] == default, key


def test_the_readme_example_is_a_valid_factory(tmp_path):
    example = re.search(r"```toml\n(.*?)```", reference_section(), re.S).group(1)
    (tmp_path / "factory.toml").write_text(example)
    cfg = load_factory(tmp_path / "factory.toml")
    assert cfg.product("shop").budget_usd == 20.0 and cfg.role("reviewer").model == "claude-opus-4-6"


def test_init_writes_every_key_with_its_default():
    text = factory_template("x")
    for key, default in schema_defaults(FactoryConfig).items():
        name = key.rsplit(".", 1)[-1]
        assert re.search(rf"^#?\s*{re.escape(name)} = ", text, re.M), key
        section, _, rest = key.partition(".")
        section = section.removesuffix("[]")
        if "." in rest or section in ("products", "prices") or default in (None, PydanticUndefined):
            continue  # tables of tables are shown as examples
        block = text[text.index(f"[{section}]\n"):]
        block = block[:block.find("\n[", 1)]
        m = re.search(rf"^#?\s*{re.escape(name)} = (.+)$", block, re.M)
        value = tomllib.loads(f"v = {m.group(1)}")["v"]
        assert value == ("x" if key == "factory.name" else default), key
    cfg = FactoryConfig.model_validate(tomllib.loads(text))
    assert cfg.products == [] and cfg.factory.name == "x"
