"""Study files, the command line and experiment tracking around the core SimCLR library."""
