"""The four services of frontier-review and the runtime plumbing they share."""
