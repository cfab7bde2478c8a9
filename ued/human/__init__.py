"""Levels that people send to a training run: the run's inbox and the chunk-boundary hook
that gives the accepted ones to the curriculum (grounding)."""
