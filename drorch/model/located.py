"""`Located`: a YAML value with the position it was read at, as both readers build it
(`drorch.model.source` over libyaml's events, `drorch.model.block_reader` for the plain
subset)."""

from __future__ import annotations

from typing import Any

from drorch.model.reports import Position


class Located:
    """A YAML value with its position. `value` is a dict[str, Located], a list[Located],
    or a plain scalar (str, int, float, bool or None); `key_positions` has the position
    of each key of a mapping.

    A plain class with slots rather than a dataclass: the readers make one per value of
    the file, and a dataclass's generated `__init__` costs twice as much. It compares
    and prints as the dataclass did."""

    __slots__ = ("key_positions", "position", "value")

    def __init__(
        self, value: Any, position: Position, key_positions: dict[str, Position] | None = None
    ) -> None:
        self.value = value
        self.position = position
        self.key_positions: dict[str, Position] = {} if key_positions is None else key_positions

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Located)
        return (self.value, self.position, self.key_positions) == (
            other.value, other.position, other.key_positions,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return (
            f"Located(value={self.value!r}, position={self.position!r},"
            f" key_positions={self.key_positions!r})"
        )

    def plain(self) -> Any:
        """The value with all positions stripped (plain dicts, lists and scalars)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value
