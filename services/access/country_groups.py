"""The agency's country-group table (versioned YAML data, expanded into orders at compile time)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from contracts.events.common import CountryCode, PolicyVersion, ShortText, Slug

DEFAULT_FILE = Path(__file__).with_name("country_groups.yaml")


class CountryGroup(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: ShortText
    countries: frozenset[CountryCode] = Field(min_length=1)


class CountryGroups(BaseModel):
    """The file's content: a version and named groups of ISO 3166-1 alpha-2 codes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: PolicyVersion
    groups: dict[Slug, CountryGroup]

    def countries(self, names: list[str]) -> frozenset[str] | str:
        """The union of the named groups, or the first unknown name."""
        found: set[str] = set()
        for name in names:
            group = self.groups.get(name)
            if group is None:
                return name
            found |= group.countries
        return frozenset(found)


def load_country_groups(path: Path = DEFAULT_FILE) -> CountryGroups:
    return CountryGroups.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
