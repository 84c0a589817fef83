"""Peer servers for :mod:`bench.fanout_bench`, each with its own in-process tick source."""
