"""The taxonomy and reply templates every installation starts with, as rows a team edits in the
admin: from the files the settings name (MAILSCORE_TAXONOMY_PATH, MAILSCORE_TEMPLATES_PATH), else
the packaged ones. Used by the data migration (with its historical models) and by anything that
must restore the starting configuration."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from django.conf import settings

from apps.triage.engine.priority import CATEGORY_BASE
from apps.triage.engine.taxonomy import NO_REPLY


def _load(name: str, setting: str) -> dict:
    path = settings.MAILSCORE_TRIAGE.get(setting)
    if path:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    packaged = resources.files("apps.triage.engine").joinpath(f"data/{name}")
    return json.loads(packaged.read_text(encoding="utf-8"))


def seed(category_model, template_model, revision_model) -> bool:
    """Create the starting categories and templates where there are no categories yet; whether
    it did. The models are passed in so that a migration can give its historical ones."""
    if category_model.objects.exists():
        return False
    taxonomy = _load("taxonomy.json", "taxonomy_path")
    templates = _load("templates.json", "templates_path")
    by_name = {}
    for name, voice in templates["categories"].items():
        by_name[name] = template_model.objects.create(
            name=name, opening=voice["opening"], body=voice["body"],
            closing=templates.get("closing", "Best regards,"),
            signature=templates.get("team", "The Support Team"),
        )  # fmt: skip
    for position, item in enumerate(taxonomy["categories"]):
        name = item["name"]
        category_model.objects.create(
            name=name, description=item["description"],
            examples="\n".join(e.replace("\n", " ") for e in item.get("examples", [])),
            expects_reply=item.get("expects_reply", name not in NO_REPLY),
            priority_base=CATEGORY_BASE.get(name, 0 if name in NO_REPLY else 10),
            reply_template=by_name.get(name), position=position,
        )  # fmt: skip
    revision_model.objects.get_or_create(pk=1, defaults={"revision": 1})
    return True
