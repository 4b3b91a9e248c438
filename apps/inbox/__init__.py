"""Messages: parsing (engine/, free of Django), and later ingest, storage and review."""
