"""gsa-exp: global spatial attention experiments for medical image classification."""

__version__ = "0.1.0"
