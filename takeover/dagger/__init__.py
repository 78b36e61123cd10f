"""DAgger rounds: round metrics, held-out evaluation, retraining, presets and reports."""
