"""How a lab's tools reach the agency: its own Kafka principal and the topic names.

The connection settings are the deployment's (``services.runtime.kafka``, prefix
``FR_``): ``FR_KAFKA_BOOTSTRAP``, ``FR_KAFKA_CA_FILE``, and the credentials file the
agency issued when it registered the lab (``FR_KAFKA_CREDENTIALS_FILE``). A lab may
write ``lab.submissions`` and ``lab.compliance`` and read only its own feeds,
``labs.<lab id>.answers`` and ``labs.<lab id>.policies``; ``FR_TOPIC_PREFIX`` is
empty except on a shared test broker.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from contracts.principals import check_tenant_id
from contracts.registry import LAB_FEED_BY_SUFFIX
from services.runtime.kafka import KafkaSettings


class LabSettings(KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FR_", extra="ignore")

    lab_id: str | None = None
    topic_prefix: str = ""

    def topic(self, name: str) -> str:
        """An agency topic's actual name (``lab.submissions``, ``lab.compliance``)."""
        return f"{self.topic_prefix}{name}"

    def feed(self, suffix: str, lab_id: str | None = None) -> str:
        """The actual name of one of the lab's own feeds (``answers``, ``policies``)."""
        lab = lab_id or self.lab_id
        if lab is None:
            raise ValueError("the lab's feeds are named by its lab id: set FR_LAB_ID")
        return self.topic(LAB_FEED_BY_SUFFIX[suffix].topic(check_tenant_id(lab)))
