"""geosearch: find coworking spaces near a point, in a polygon or a box."""
