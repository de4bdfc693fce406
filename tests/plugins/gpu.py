"""Fixtures for the GPU area: tiny real GGUF models (llama and gpt-oss architectures).
The fake NVML is selected per call with OSSCTL_FAKE_NVML (see ossctl/gpu/fake.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ggufgen import write_model
from tests.support.ossgen import write_oss


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """The tiny llama model split in 3 parts, as llama-gguf-split writes them."""
    d = tmp_path_factory.mktemp("gpu-tiny-llama")
    write_model(d, "tiny", parts=3)
    return d


@pytest.fixture(scope="session")
def tiny_oss_dir(tmp_path_factory) -> Path:
    """A tiny real gpt-oss model (4 layers, SWA window 128, 4 experts) llama-server loads."""
    d = tmp_path_factory.mktemp("gpu-tiny-oss")
    write_oss(d)
    return d


@pytest.fixture(scope="session")
def oss_meta_path(tmp_path_factory) -> Path:
    """Only the header of the tiny gpt-oss model (no tensors)."""
    return write_oss(tmp_path_factory.mktemp("gpu-oss-meta"), metadata_only=True)

