"""Labelled images: sources (digits, TFDS, folders, ImageNet subsets), the hold-out split, tf.data
pipelines. Lower modules first: arrays, decoding, subsets, imagenet, sources, holdout, pipeline."""
