"""CLI command groups, one module per area. Each exposes `register(app)`."""
