"""The simulated docking AMR: world, rendering, kinematics, scripted expert."""
