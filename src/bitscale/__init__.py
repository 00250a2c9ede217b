"""bitscale: train, scale and run 1-bit and ternary neural networks."""
