"""The test kit: what every test package uses to drive the real stack.

Produce and read records, create topics, give a rig its own name, schema and
topic prefix, start a service for a test, move time, wait for a condition.
Written once here; test packages import from ``tests.kit``, never from a
conftest.
"""

from tests.kit.clock import MovableClock
from tests.kit.kafka import (
    Producer,
    TopicWatcher,
    create_feeds,
    create_registry_topics,
    create_topics,
    lab_settings,
    produce,
    read_topic,
    test_topic,
)
from tests.kit.observability import Scrape, TcpProxy, get_json, scrape, scrape_until
from tests.kit.services import (
    NewTopic,
    StartService,
    drop_schema,
    free_port,
    isolated,
    process_env,
    running,
    wait_for,
)

__all__ = [
    "MovableClock",
    "NewTopic",
    "Producer",
    "Scrape",
    "StartService",
    "TcpProxy",
    "TopicWatcher",
    "create_feeds",
    "create_registry_topics",
    "create_topics",
    "drop_schema",
    "free_port",
    "get_json",
    "isolated",
    "lab_settings",
    "process_env",
    "produce",
    "read_topic",
    "running",
    "scrape",
    "scrape_until",
    "test_topic",
    "wait_for",
]
