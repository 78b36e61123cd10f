"""DAgger rounds: workspace, model registry, metrics, simulated operator."""
