"""A record of every handling step applied to the data, so nothing is dropped silently.

Each step (rows dropped, columns dropped, values converted or imputed) is logged when it
happens and kept in a :class:`DataReport`, which the CLI writes into its JSON and Markdown
results.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("facefeat.survival")


@dataclass
class ReportItem:
    """One handling step: what happened, to how many rows or columns, with examples."""

    step: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    level: str = "info"


class DataReport:
    """An ordered list of :class:`ReportItem`, logged as they are added."""

    def __init__(self) -> None:
        self.items: list[ReportItem] = []

    def add(
        self, step: str, message: str, *, count: int = 0, examples: Any = (), level: str = "info"
    ) -> None:
        ex = [str(e) for e in list(examples)[:10]]
        self.items.append(ReportItem(step, message, int(count), ex, level))
        text = f"{step}: {message}" + (f" (e.g. {', '.join(ex)})" if ex else "")
        log.log(logging.WARNING if level == "warning" else logging.INFO, text)

    def extend(self, other: "DataReport | None") -> None:
        if other is not None:
            self.items.extend(other.items)

    def to_list(self) -> list[dict]:
        return [asdict(i) for i in self.items]

    def to_markdown(self) -> str:
        if not self.items:
            return "No rows or columns were dropped or changed.\n"
        lines = ["| step | what | count | examples |", "| --- | --- | ---: | --- |"]
        for i in self.items:
            msg = i.message.replace("|", "\\|")
            lines.append(f"| {i.step} | {msg} | {i.count} | {', '.join(i.examples)} |")
        return "\n".join(lines) + "\n"

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"DataReport({len(self.items)} items)"
