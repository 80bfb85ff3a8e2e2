"""StyleGAN2 (config-e/f) in pure PyTorch."""
