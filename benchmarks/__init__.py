"""Throughput and scaling measurements (run by hand or by `make bench`, never as tests)."""
