"""One model family per file, as in diffusers' ``models/autoencoders``."""
