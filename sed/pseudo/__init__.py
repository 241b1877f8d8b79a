"""Pseudo-labels and distillation: teacher predictions per fold and the student's targets."""
