"""Example simclr-ablations plugins: ``solarize`` (a transformation), ``dcl`` (a loss), ``vit`` (an encoder)."""
