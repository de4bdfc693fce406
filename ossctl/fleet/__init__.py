"""Many Docker engines: a profile's releases rolled host by host (in batches) behind one
front door that is drained and put back around each host's step."""
