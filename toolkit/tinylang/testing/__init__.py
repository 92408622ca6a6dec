"""Test support that ships with the package, so users and benchmarks can use it too."""
