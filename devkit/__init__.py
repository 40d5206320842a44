"""Development harnesses and test helpers: the tiny CLIP and the synthetic datasets the tests and
the demo build on, a throwaway Slurm cluster, on-disk snapshots, the pytest plugin that fails a
run skipping for want of Dassl, the helpers test modules share (train runs, script runs, logs),
and the harnesses behind the development commands in tools/ (the demo, the tiny CLIP's
pretraining, the parity checks against the official KgCoOp and CoOp code). Not for users'
experiments: those go through train.py, scripts/ and the experiments package."""
