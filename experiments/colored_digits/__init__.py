"""The Colored Digits experiment: the GenInt paper's controlled experiment (Table 5) on scikit-learn's digits."""
