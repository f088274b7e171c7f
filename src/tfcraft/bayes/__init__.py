"""Probabilistic inference: ELBO, predictive uncertainty, ensembles and calibration."""
