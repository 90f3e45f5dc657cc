"""geosearch.backends."""
