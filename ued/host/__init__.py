"""The host: the train driver and what runs around the jitted chunks (run folders,
checkpoints, logs, chunk records, memory limits, signals, XLA flags), the benchmark
harness, and level-model training."""
