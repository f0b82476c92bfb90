"""NeRF view synthesis (paper Table 1): procedural scenes in the Blender layout, and the official loaders."""
