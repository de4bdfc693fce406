"""The ModelRegistry contract: artifact, key sources, and the web3 client."""
