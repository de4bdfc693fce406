"""ossctl: from nothing on disk to a verified GPT-OSS model served by llama.cpp."""

__version__ = "0.1.0"
