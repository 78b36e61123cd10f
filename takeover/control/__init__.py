"""The control core: the fixed-rate loop, the Arbiter (modes and safety), the demonstration
perturbation, the episode runner. Knows links and operator sources by their interfaces only."""
