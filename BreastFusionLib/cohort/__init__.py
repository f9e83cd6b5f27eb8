"""Cohort data: the manifest contract, its validation and patient-level splits."""
