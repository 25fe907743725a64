"""The `tongbu` command: serve, demo, admin, term and agent sub-commands."""
