"""Built-in discovery plugins."""
