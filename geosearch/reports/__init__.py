"""geosearch.reports."""
