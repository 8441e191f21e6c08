"""DreamCraft3D: image-to-3D with score and bootstrapped score distillation."""
