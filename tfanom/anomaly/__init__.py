"""Anomaly scores (`scores`: higher = more anomalous) and the metrics that rank them (`metrics`)."""
