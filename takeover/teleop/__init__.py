"""Control core: fixed-rate loop, Arbiter (modes and safety), drivers and inputs."""
