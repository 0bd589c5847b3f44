"""Bottom layer: errors, vocabulary, config hashing, atomic files, the job record."""
