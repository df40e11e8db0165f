"""issuemap's HTTP service: a thin FastAPI adapter over ``geo``."""
