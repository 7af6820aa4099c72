"""Using a trained model: the one Scorer, feature statistics, rebuilding a run from its workdir,
evaluation with every score (eval.json) and SavedModel export. Of training, only what a checkpoint
holds (`tfanom.training.checkpoints`) is imported here."""
