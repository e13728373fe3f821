"""The worker processes that run the families, the shards they are split into, and what a stopped one left told to the gate."""
