"""Explanations of a trained classifier (seed 004: the expected property gradient magnitude along a
gradual intervention, with its permutation test; seed 001's reproduction: GradCAM and its IoU with
digit masks). Model-agnostic pieces only: what sweeps to make is the caller's (cluster/explain.py).
"""
