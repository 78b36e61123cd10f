"""takeover: teach a mobile robot to dock by demonstration and human-gated DAgger."""

__version__ = "0.1.0"
