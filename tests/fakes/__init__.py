"""Protocol-faithful fake servers (real HTTP on 127.0.0.1) that the connector tests and benchmarks run against."""
