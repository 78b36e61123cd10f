"""Sessions over the robot stack: the composition root (`stack`), the operator's session and its
process (`operator`, `core_process`), the training job (`training`) and headless drive
(`drive`)."""
