"""Adapters from the data sets in ``../shared/data`` to :class:`csrm_guard.training.data.Example`.

One module per source family; :data:`ADAPTERS` is the registry the build iterates, one entry per data set folder,
each listing the files it reads and the files it deliberately skips (with the reason, shown in the data card).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from csrm_guard.errors import DataError
from csrm_guard.training.adapters.beavertails import load_beavertails, load_pku, load_spard
from csrm_guard.training.adapters.donotanswer import load_do_not_answer
from csrm_guard.training.adapters.jailbreak import load_gptfuzz, load_jailbreakbench
from csrm_guard.training.adapters.moderation import load_openai_moderation, load_toxicchat
from csrm_guard.training.adapters.prompts import (
    load_advbench,
    load_aegis,
    load_ailuminate,
    load_harmbench,
    load_sgbench,
    load_simplesafetytests,
    load_strongreject,
    load_wildguardtest,
)
from csrm_guard.training.data import Example

__all__ = ["ADAPTERS", "RULE_SOURCES", "Adapter", "adapter_for", "load_source"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Adapter:
    """One data set folder and how to read it.

    Attributes:
        name: The folder name under the data directory (also the ``source`` of its examples).
        load: Reads the folder and yields examples.
        skipped: ``(relative path, reason)`` for files present but deliberately not read.
    """

    name: str
    load: Callable[[Path], Iterator[Example]]
    skipped: tuple[tuple[str, str], ...] = ()


_DUPLICATE = "same rows as the derived file that is read"
ADAPTERS: tuple[Adapter, ...] = (
    Adapter(
        "advbench",
        load_advbench,
        (
            (
                "pair-subset/harmful_behaviors_custom.csv",
                "50 AdvBench behaviors already read from the full set",
            ),
        ),
    ),
    Adapter("aegis", load_aegis),
    Adapter("ailuminate-demo", load_ailuminate),
    Adapter("beavertails", load_beavertails),
    Adapter("beavertails-pairs-spard", load_spard),
    Adapter(
        "do-not-answer",
        load_do_not_answer,
        (("do_not_answer_en.csv", "the 939 questions, already in data_en.csv with their responses"),),
    ),
    Adapter("gptfuzz-labeled-responses", load_gptfuzz),
    Adapter(
        "harmbench-behaviors",
        load_harmbench,
        (
            ("behavior_datasets/harmbench_behaviors_text_test.csv", "subset of _all.csv"),
            ("behavior_datasets/harmbench_behaviors_text_val.csv", "subset of _all.csv"),
        ),
    ),
    Adapter(
        "jailbreakbench",
        load_jailbreakbench,
        (
            ("artifacts/*/attack-info.json", "attack metadata, no rows"),
            ("artifacts/DSN/evaluation.json", "another view of the DSN white_box responses already read"),
        ),
    ),
    Adapter("openai-moderation", load_openai_moderation),
    Adapter("pku-saferlhf", load_pku, (("guardreasoner/0_9_safe_rlhf.json", _DUPLICATE),)),
    Adapter("sgbench", load_sgbench),
    Adapter("simplesafetytests", load_simplesafetytests),
    Adapter("strongreject", load_strongreject),
    Adapter(
        "toxicchat",
        load_toxicchat,
        (
            (
                "judge-bench/toxic_chat_test.json",
                "same prompts as wizard101/toxicchat_test.json; read for the jailbreaking flag only",
            ),
        ),
    ),
    Adapter("wildguardtest", load_wildguardtest),
)
"""Every example-producing data set, sorted by folder name."""

RULE_SOURCES: tuple[str, ...] = ("dynaguard-ifeval-rules",)
"""Folders read for rule texts, not examples (see :mod:`csrm_guard.training.adapters.rules`)."""


def adapter_for(name: str) -> Adapter:
    """Return the adapter of the folder ``name``.

    Raises:
        DataError: When no adapter reads that folder.
    """
    for adapter in ADAPTERS:
        if adapter.name == name:
            return adapter
    raise DataError(f"no adapter for data set {name!r}; known: {', '.join(a.name for a in ADAPTERS)}")


def load_source(data_dir: Path, name: str) -> list[Example]:
    """Read one data set folder under ``data_dir`` into examples.

    Raises:
        DataError: When the folder is missing or a file is malformed (the message names the file and row).
    """
    folder = data_dir / name
    if not folder.is_dir():
        raise DataError("data set folder not found", source=str(folder))
    return list(adapter_for(name).load(folder))
