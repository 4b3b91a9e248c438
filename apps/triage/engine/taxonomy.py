"""The category taxonomy: data, not code. Each category has a description and labelled
examples; both teach the classifier what the category means."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

# Categories decided by headers or the spam head, and the ones that never get a draft.
NO_REPLY = frozenset({"spam", "newsletter", "notification", "auto_reply", "bounce"})


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    expects_reply: bool = True
    examples: tuple[str, ...] = ()


@dataclass
class Taxonomy:
    categories: list[Category]
    version: str = "custom"
    _by_name: dict[str, Category] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.categories]
        if len(set(names)) != len(names):
            raise ValueError("Category names must be unique.")
        for required in ("spam", "other"):
            if required not in names:
                raise ValueError(f"The taxonomy needs a {required!r} category.")
        self._by_name = {c.name: c for c in self.categories}

    def __getitem__(self, name: str) -> Category:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def digest(self) -> str:
        payload = json.dumps([vars(c) for c in self.categories], sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict) -> Taxonomy:
        categories = [
            Category(
                name=item["name"],
                description=item["description"],
                expects_reply=item.get("expects_reply", item["name"] not in NO_REPLY),
                examples=tuple(item.get("examples", ())),
            )
            for item in data["categories"]
        ]
        return cls(categories, version=data.get("version", "custom"))

    @classmethod
    def load(cls, path: str | Path | None = None) -> Taxonomy:
        if path:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        packaged = resources.files("apps.triage.engine").joinpath("data/taxonomy.json")
        return cls.from_dict(json.loads(packaged.read_text(encoding="utf-8")))
