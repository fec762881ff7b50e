"""The robustness report (`--mode robustness`): common corruptions, adversarial attacks, calibration
and cross-domain evaluation of a trained run's model, through the task's own evaluation hooks."""
