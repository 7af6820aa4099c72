"""Training: strategies (`distribute`), the alternating loop (`loop.Trainer`), a whole run and its
trials (`run`), and what a run reports (`results`)."""
