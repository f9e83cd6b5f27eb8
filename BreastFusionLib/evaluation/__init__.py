"""Evaluation statistics and figures: AUC with DeLong CIs and tests, threshold metrics with bootstrap CIs."""
