"""leasegate benchmarks and the chaos driver: `make bench`, `make chaos` (see README.md)."""
