"""Plain-Python view-models of the dashboard: the catalog, triage, results tables, installation status."""
