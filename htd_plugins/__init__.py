"""Built-in htd plugins, one module each, each declared as an entry point of group ``htd``."""
