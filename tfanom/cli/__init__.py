"""What the command lines share: flags generated from a config dataclass, with one-line errors, and a quiet TensorFlow start-up."""
