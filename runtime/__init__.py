"""Running models: sessions for every backend, benchmarking, and (later) serving and deploying."""
