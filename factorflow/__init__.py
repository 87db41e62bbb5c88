"""factorflow: retrain matrix-factorization recommenders and publish their factor tables."""
__version__ = "0.1.0"
