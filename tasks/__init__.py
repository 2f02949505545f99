"""Built-in tasks: one module per domain, each exposing ``DOMAIN`` (see ftdojo.tasking)."""
