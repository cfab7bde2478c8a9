"""The train step's pure, jittable parts: the student (networks, kernels, PPO), score
functions, level sets and the level buffer, the program archive and specification, and the
schedule that the seeds of a run share. Below the curricula, which are built from them."""
