"""Reading TOML settings files and turning pydantic's errors into one clear line.

The job file and a node's ``node.toml`` are read the same way: a missing or unreadable
file, bad TOML, an unknown key (with a "did you mean" suggestion) or a bad value each
become one line that names the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from accord.errors import InputError


def read_toml(path: Path, error: type[InputError], what: str) -> dict[str, Any]:
    """The parsed TOML of ``path``; ``FileNotFoundError`` is left to the caller."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the {what} ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc})") from None


def validation_line(exc: ValidationError, root: type[BaseModel]) -> str:
    """One line for the most useful of pydantic's errors, plus how many more there are.

    An unknown key comes first: a misspelt key also makes the real one look missing.
    """
    errors = sorted(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
    more = exc.error_count() - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return _describe(dict(errors[0]), root) + suffix


def _key(loc: tuple[Any, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"


def _describe(error: dict[str, Any], root: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    key = _key(loc)
    if error["type"] == "extra_forbidden":
        allowed = allowed_keys(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        return f"{key}: unknown key; {hint}"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if message.startswith(f"{key}.") or not loc:
        # A whole-document check names its own keys.
        return message
    if error["type"] == "literal_error":
        choices = message.removeprefix("Input should be ")
        return f"{key}: unknown value {error.get('input')!r}; choose {choices}"
    if "input" not in error or isinstance(error["input"], dict | list):
        return f"{key}: {message}"
    return f"{key}: {message} (got {error['input']!r})"


def allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at ``loc`` accepts (its aliases where it has them)."""
    model: type[BaseModel] | None = root
    skip_next = False
    for part in loc:
        if skip_next or isinstance(part, int):
            skip_next = False
            continue
        field = model.model_fields.get(str(part)) if model is not None else None
        if field is None:
            field = next(
                (f for f in (model.model_fields.values() if model else ()) if f.alias == part),
                None,
            )
        if field is None:
            return []
        model, skip_next = _inner_model(field.annotation)
        if model is None:
            return []
    assert model is not None
    return sorted((info.alias or name) for name, info in model.model_fields.items())


def _inner_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model inside an annotation, and whether a dict key comes before it in a loc."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    is_dict = typing.get_origin(annotation) is dict
    for arg in typing.get_args(annotation):
        found, _ = _inner_model(arg)
        if found is not None:
            return found, is_dict
    return None, False
