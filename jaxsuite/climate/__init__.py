"""Atlantic blocking in the Marshall-Molteni QG model: solver, labels, CNN and XAI."""
