"""The latent diffusion library behind the ``controlnet_ldm`` and ``concat_ldm`` backbones:
autoencoder, shared backbone base, training loop, sampling, checkpoints and presets."""
