"""Datasets over feature dumps: crop strategies, targets and collation."""
