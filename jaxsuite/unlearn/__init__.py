"""S3T: exact machine unlearning with sequence-aware sharded sliced training."""
