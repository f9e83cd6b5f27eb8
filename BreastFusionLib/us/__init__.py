"""Breast ultrasound images: loading, burned-in overlay removal and lesion crops."""
