"""Routing evaluation: accuracy, out-of-scope recall and calibration of router classifiers."""
