"""The ``issuemap`` command: the only code in geo/ that imports typer, rich or uvicorn."""
