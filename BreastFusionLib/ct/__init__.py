"""Chest-CT volumes: the in-memory type, loading, windowing and crops."""
