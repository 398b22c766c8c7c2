"""`pneumo-edge bench`: per-stage and end-to-end figures, each a ratio to
reference points measured in the same run (the models' own limit, a naive
PyTorch baseline)."""
