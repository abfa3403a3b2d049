"""Shared plumbing: settings, broker, database, migrations, inbox, outbox relay,
dead letters and telemetry. Every service imports it; it imports no service."""
