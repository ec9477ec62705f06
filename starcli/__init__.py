"""starcli: ask questions about, and summarize, very long documents from the terminal."""

__version__ = "0.1.0"
