"""A report's life: intake, storage, search, workflow, photos, imports, export, live events."""
