"""Pydantic validation errors as the platform's InvalidInput (a 422 problem naming the field)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from server.domain.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], doc: dict[str, Any]) -> M:
    """The model, or InvalidInput with the first error's path as the field."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}: {first['msg']}", field=where) from None
