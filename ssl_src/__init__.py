"""ssl_src: the companion package of the book on collapse in non-contrastive self-supervised learning."""

__version__ = "0.2.0"

import warnings

# Libraries import tqdm.auto, which warns inside notebooks without ipywidgets; our bars are plain text.
warnings.filterwarnings("ignore", message="IProgress not found")
