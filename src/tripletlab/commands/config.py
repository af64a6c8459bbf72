"""``tripletlab config``: every RunConfig key with its type, default and description —
generated from :class:`~tripletlab.pipeline.config.RunConfig` (its pydantic fields), so the
list cannot drift from what a run reads — and ``--toml FILE`` to write the resolved config.

Example:
    >>> rows = config_rows(RunConfig())
    >>> [row for row in rows if row[0] == "train.epochs"][0][:3]
    ('train.epochs', 'int', '30')
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from tripletlab.pipeline.config import RunConfig, load_config

__all__ = ["config_command", "config_rows", "to_toml"]


def _type_name(annotation: Any) -> str:
    """A short readable type: ``int``, ``float | None``, ``'none' | 'light' | 'strong'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _value_text(value: Any) -> str:
    return "None" if value is None else json.dumps(value) if not isinstance(value, str) else value


def config_rows(cfg: RunConfig) -> list[tuple[str, str, str, str, str]]:
    """(dotted key, type, default, value in ``cfg``, description) for every leaf key."""
    defaults = RunConfig()
    rows: list[tuple[str, str, str, str, str]] = []

    def walk(model: BaseModel, default: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value, base = getattr(model, name), getattr(default, name)
            if isinstance(value, BaseModel):
                walk(value, base, f"{prefix}{name}.")
                continue
            rows.append(
                (
                    prefix + name,
                    _type_name(field.annotation),
                    _value_text(base),
                    _value_text(value),
                    field.description or "",
                )
            )

    walk(cfg, defaults, "")
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def to_toml(cfg: RunConfig) -> str:
    """The config as TOML (keys whose value is None are commented out: TOML has no null).

    Example:
        >>> print(to_toml(RunConfig()).splitlines()[0])
        # tripletlab run config (every key; defaults where unset)
    """
    lines = ["# tripletlab run config (every key; defaults where unset)"]
    section = None
    for key, _type, _default, _value, description in config_rows(cfg):
        head, _, leaf = key.rpartition(".")
        if head != section:
            section = head
            lines += ["", f"[{head}]"] if head else []
        value = _lookup(cfg, key)
        comment = f"  # {description}" if description else ""
        if value is None:
            lines.append(f"# {leaf} ={comment}")
        else:
            lines.append(f"{leaf} = {_toml_value(value)}{comment}")
    return "\n".join(lines) + "\n"


def _lookup(cfg: RunConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@click.command("config")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Resolve this TOML/YAML/JSON file over the defaults first.",
)
@click.option("--toml", "toml_path", type=click.Path(dir_okay=False), help="Write it as TOML.")
def config_command(config_path: str | None, toml_path: str | None) -> None:
    """Print every run config key: type, default, value and description."""
    cfg = load_config(config_path)
    rows = config_rows(cfg)
    width = max(len(row[0]) for row in rows)
    for key, type_name, default, value, description in rows:
        shown = f"{value}" if value == default else f"{value} (default {default})"
        click.echo(f"{key:<{width}}  {type_name}  = {shown}")
        if description:
            click.echo(f"{'':<{width}}    {description}")
    if toml_path is not None:
        Path(toml_path).write_text(to_toml(cfg), encoding="utf-8")
        click.echo(f"written: {toml_path}")
