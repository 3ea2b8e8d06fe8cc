"""Digits pointer-value retrieval: seed 003's MNIST-PVR benchmark on scikit-learn's digits."""
