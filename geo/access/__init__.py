"""Who may do and see what: API keys and the one policy module of roles and visibility."""
