"""Audio decoding, the log-mel front end and HDF5 feature dumps."""
