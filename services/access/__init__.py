"""The access service: restriction orders compiled to Cedar, versioned model policies,
impact previews and compliance checks (phase 1: the domain; Kafka wiring follows)."""
