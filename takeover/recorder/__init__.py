"""Crash-safe HDF5 episodes and the episode store."""
