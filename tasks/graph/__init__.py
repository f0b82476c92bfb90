"""The graph task (torch-geometric): node classification and a graph autoencoder."""
