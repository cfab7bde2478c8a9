"""The config layer: option declarations, the typed config and its loader, experiment YAML
read with limits, and what an evaluation runs on. Above the files layer and the env families
(whose registry it checks level-set names against); below everything else."""
