"""The `keystead` command."""
