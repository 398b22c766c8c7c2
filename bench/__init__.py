"""The developer's bench (`python -m bench`, `make bench`): per-stage and end-to-end
figures of the runtime, each a ratio to reference points measured in the same
run (the machine's best models' limit over thread counts, a naive PyTorch
baseline of the same networks, the matmul peak). Not part of the runtime:
it imports edge, models and build_engine."""
