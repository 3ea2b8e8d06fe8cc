"""Generators behind one interface: BigGAN-deep, the class-conditional VAE, and later CGN."""
