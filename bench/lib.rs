//! Benchmarks of evald live in `benches/`; `load.sh` measures the HTTP load path against wrk.
