"""The `flowctl` command."""
