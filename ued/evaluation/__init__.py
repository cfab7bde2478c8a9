"""Evaluation over level sets, pictures of a run (galleries, episodes) and statistics over
training seeds."""
