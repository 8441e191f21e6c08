"""DreamCraft3D: image-to-3D with score distillation and bootstrapped score distillation."""
