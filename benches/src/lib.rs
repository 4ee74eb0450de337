//! Benchmarks for rbio engines; the targets live in `benches/`.
