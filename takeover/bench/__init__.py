"""Measurement harnesses behind `takeover bench`: the loop and simulator, the links, the
recorder and BC against DAgger. Each returns a JSON-ready dict; medians and percentiles measured
in one run, never a timed assert."""
