"""geosearch.ingest."""
