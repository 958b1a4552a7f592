"""Dynamic scenes: proxy meshes moving along trajectories, local re-tracing of the links they touch."""
