"""Loopback peers: real servers on 127.0.0.1 that tests and benchmarks run the live sources against."""
