"""Reading streams for training: DALI pipelines over static and growing shard streams."""
