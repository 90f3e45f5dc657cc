"""Helpers that the test suite, the scripts and the benchmark share (like numpy.testing).

Not part of the public API, and none of it imports pytest: it ships in the wheel, whose
dependencies do not include it.

- :mod:`~geosearch.testing.ports`: a TCP port free on loopback.
- :mod:`~geosearch.testing.served`: a WSGI app served on loopback in a thread.
- :mod:`~geosearch.testing.pgcluster`: a throwaway PostgreSQL + PostGIS cluster (and
  pgbouncer, and hot standbys); also a command line,
  ``python -m geosearch.testing.pgcluster``.
- :mod:`~geosearch.testing.tilecheck`: a vector tile checked against the bbox query of
  its bounds.
- :mod:`~geosearch.testing.oracle`: the brute-force reference the backends are checked
  against.
- :mod:`~geosearch.testing.livewrites`: random writes through the API, and a backend's
  answers after them held to the oracle.
- :mod:`~geosearch.testing.synthetic`: generated spaces (geometry edge cases, text
  search, a network of any size).
- :mod:`~geosearch.testing.hostile`: the hostile request battery and what a good answer
  to it is; :mod:`~geosearch.testing.hostile_wire`: its cases that exist only on the wire
  (forged Host and forwarding headers, malformed chunked bodies, a TLS handshake);
  :mod:`~geosearch.testing.hostile_writes`: its cases of the write routes and the change
  feed, each one fault away from a write.
"""
