"""ConditionBuilder: turns a TissueSample (or a layout) into a Condition."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from htd_core.errors import InputError
from htd_core.types import ClassMap, Condition, TissueSample


def require_class_list(builder: str, configured: Sequence[str] | None, class_map: ClassMap) -> None:
    """Refuse samples whose classes differ from those a builder was configured (trained) for:
    a backbone's condition channel count is fixed at training time."""
    if configured is not None and tuple(class_map.names) != tuple(configured):
        raise InputError(
            f"{builder} was configured for {len(configured)} classes {list(configured)} but the "
            f"sample has {len(class_map)} classes {list(class_map.names)}: use the class list "
            "the model was trained with"
        )


class ConditionBuilder(ABC):
    """Builds the condition of one sample.

    ``channels(class_map)`` must predict exactly the channel names ``build`` returns, so a
    backbone can size its conditioning input before seeing data. Builders compose with ``+``:
    ``semantic_map + crop`` concatenates channels and tokens (the paper's dual condition).
    """

    #: Width of the tokens this builder emits (None: no tokens).
    token_dim: int | None = None

    @abstractmethod
    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        """Names of the spatial channels built for samples of ``class_map``."""

    def token_names(self, class_map: ClassMap) -> tuple[str, ...]:
        """Names of the tokens built for samples of ``class_map`` (default: none)."""
        return ()

    @abstractmethod
    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        """Condition for ``sample``; the same ``seed`` gives the same tensors."""

    def __add__(self, other: ConditionBuilder) -> ComposedConditionBuilder:
        if not isinstance(other, ConditionBuilder):
            return NotImplemented
        return ComposedConditionBuilder([self, other])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ComposedConditionBuilder(ConditionBuilder):
    """Several builders whose conditions are concatenated in order."""

    def __init__(self, builders: Sequence[ConditionBuilder]) -> None:
        flat: list[ConditionBuilder] = []
        for b in builders:
            flat.extend(b.builders if isinstance(b, ComposedConditionBuilder) else [b])
        if not flat:
            raise ValueError("ComposedConditionBuilder needs at least one builder")
        dims = {b.token_dim for b in flat if b.token_dim is not None}
        if len(dims) > 1:
            raise ValueError(f"composed builders emit tokens of different widths {sorted(dims)}")
        self.builders = flat
        self.token_dim = dims.pop() if dims else None

    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        return tuple(c for b in self.builders for c in b.channels(class_map))

    def token_names(self, class_map: ClassMap) -> tuple[str, ...]:
        return tuple(t for b in self.builders for t in b.token_names(class_map))

    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        condition = Condition()
        for b in self.builders:
            condition = condition + b.build(sample, seed=seed)
        return condition

    def __repr__(self) -> str:
        return " + ".join(repr(b) for b in self.builders)
