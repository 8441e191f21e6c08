"""MoS (mixture of shards) and its peers as parameter-efficient adapters for Flax NNX."""
