//! Benchmarks for meshkit. The criterion benches are in `benches/`; the binaries in
//! `src/bin` are the peers for the whole-process comparisons in `scripts/`; the figures
//! are in `README.md`.
