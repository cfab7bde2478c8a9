"""The lowest layer: files that a person named, read and written without hanging, filling
memory or losing data. Imports no other layer; the env families (``envs/``) use it too."""
