"""issuemap's spatial core: settings, database, boundaries, routing and the CLI.

Nothing in this package imports a web framework; ``api`` adapts it to HTTP.
"""
