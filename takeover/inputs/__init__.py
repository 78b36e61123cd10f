"""Operator sources for the control loop: the gamepad (SDL), the keyboard, both combined, the
scripted drivers of headless runs and the simulated operator."""
