//! Integration tests, examples and benchmarks of the fieldsync workspace live in `tests/` and `examples/`; this library holds their shared fixtures.
