"""ssl_src: the companion package of the book on collapse in non-contrastive self-supervised learning."""

__version__ = "0.1.0"
