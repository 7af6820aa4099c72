"""Training: strategies (`distribute`), the steps' maths (`steps`), learning-rate schedules
(`schedules`), checkpoints (`checkpoints`), evaluation during training (`eval_step`), the epoch
loop (`loop.Trainer`), a whole run and its trials (`run`), and what a run reports (`results`)."""
