"""The treaties' rules, as pure functions over parsed documents."""
