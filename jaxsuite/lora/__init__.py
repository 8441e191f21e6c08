"""MoS (mixture of shards) and its peers as adapters for Flax NNX models."""
