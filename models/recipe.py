"""A model kind's recipe: what the CLI, training and export need to know about it, next to its model.

A recipe says which data family trains the model, the training defaults, and how to build the model's
config from a dataset (`config`) and hand it what it holds besides learned weights (`attach`: item
features, title tokens, word vectors). Everything else follows from what the model declares: its
`user_input` and `scorer_kind` (docs/bundle.md) choose the batches it trains on and the bundle data it ships.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The data families training knows (training/families.py): how a dataset is read, batched and evaluated.
FAMILIES = ("interactions", "news")


class DatasetMismatch(ValueError):
    """A config builder's complaint that the dataset lacks what the model needs; training reports it as a data
    error naming the dataset's file with this suffix (e.g. ".item")."""

    def __init__(self, file_suffix: str, problem: str):
        super().__init__(problem)
        self.file_suffix = file_suffix


def _nothing(model: Any, data: Any, opts: Any) -> None:
    """A model that holds nothing but learned weights."""


@dataclass(frozen=True)
class Recipe:
    kind: str                                     # the name used everywhere: CLI, bundles, manifests
    model: type                                   # the RecModel subclass
    config: type                                  # its config dataclass (stored in checkpoints)
    family: str                                   # "interactions" (RecBole atomic files) or "news" (MIND)
    summary: str                                  # one line for --help
    build_config: Callable[[Any, Any], Any]       # (dataset, DataOptions) -> config
    attach: Callable[[Any, Any, Any], None] = _nothing  # (model, dataset, DataOptions): non-learned tables
    # News family: (model, dataset, DataOptions) -> (the bundle's item inputs, its tokenizer.json content), for a
    # model whose items are not the dataset's word-tokenized titles (None: title_tokens + the word tokenizer).
    item_text: Callable[[Any, Any, Any], tuple[dict, dict]] | None = None
    defaults: dict = field(default_factory=dict)  # TrainConfig values (batch_size, lr, epochs, monitor, ...)
    # Settable hyperparameters (training/settings.py): every config field with a default is one, except those in
    # `from_data` (the dataset or a data option decides them: build_config fills them in). `limits` maps a field
    # to a models.limits check of its meaningful values, `checks` test fields together (heads dividing a size);
    # `data_options` names the DataOptions fields this kind reads (--max-seq-length, --features, ...).
    limits: dict = field(default_factory=dict)
    checks: tuple = ()
    from_data: tuple[str, ...] = ()
    data_options: tuple[str, ...] = ()
    # The settings (`section.field`: value) that turn the defaults into the reference implementation's recipe
    # (RecBole 1.2.1's) where the defaults trade it for speed or accuracy: `recserve train --reference-recipe`.
    reference: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"recipe {self.kind!r}: unknown data family {self.family!r}; expected one of {FAMILIES}")
