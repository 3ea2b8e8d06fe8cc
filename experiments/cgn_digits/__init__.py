"""CGN digits: seed 001's coloured, double-coloured and textured MNIST benchmarks on scikit-learn's digits."""
