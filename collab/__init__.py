"""collab: Collaborative Diffusion (Huang et al., CVPR 2023) for multi-modal face generation and editing."""
__version__ = "0.1.0"
