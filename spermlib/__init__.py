"""spermlib: interpretable sperm-morphology classification (EfficientNet + CBAM, Grad-CAM++)."""

__version__ = "0.1.0"
