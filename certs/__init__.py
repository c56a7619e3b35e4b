"""The hub's certificate authority, its trust decisions and the keys that sign."""
