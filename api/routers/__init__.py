"""Routers by resource: service, maps, reports, teams, open311, admin."""
