"""The networks and the autoencoder classes of the family (one file per family in ``autoencoders/``)."""
