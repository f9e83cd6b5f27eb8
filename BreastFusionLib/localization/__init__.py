"""Localizing a breast mass relative to the nipple (clock position + distance) on chest CT."""
