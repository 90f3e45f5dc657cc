"""geosearch.api."""
