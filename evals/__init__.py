"""Research harness: datasets, metrics, baselines, tuning, MLflow tracking and router promotion."""
